"""The scoring state of one live source, shared by ``adplg watch`` (one source) and ``adplg serve`` (many cameras):
frames -> 16-frame snippets -> backbone features -> online snippet scores -> alerts.

:class:`SnippetLoop` holds the snippet being filled, the complete snippets awaiting the backbone, the snippets
awaiting their final score, the online scorer and the alert state. What happens to a final score, an alert event or
an outage is left to its subclass (the hooks ``on_score``, ``on_alert``, ``on_down``, ``on_up``): ``adplg watch``
writes JSON lines, a CSV and snapshots; the camera service turns them into its events.

The backbone step is split so that a caller holding several loops can batch their snippets into one forward pass:
:meth:`SnippetLoop.take` pops the next complete snippets of one size and says which of them need the backbone
(frame skipping, ``encode_every``), :meth:`SnippetLoop.accept` takes their features and scores them;
:meth:`SnippetLoop.encode` does both with the loop's own extractor (what ``adplg watch`` does). See
:mod:`adplg.live.watch` for the pipeline's clock, latency, memory and outage rules, which this class implements.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from adplg.conventions import SNIPPET_FRAMES
from adplg.data.gt import SnippetLayout
from adplg.inference.timeline import ASSUMED_FPS, Timeline, build_timeline
from adplg.live.sources import END, Frame, StreamDown, StreamUp

if TYPE_CHECKING:
    from adplg.inference.online_alerts import AlertEvent, OnlineAlerts

__all__ = ["ENCODE_PROBE", "ReadySnippet", "SnippetLoop", "fit_frame"]

log = logging.getLogger(__name__)

ENCODE_PROBE = 8  # snippets encoded before the measured encode time is announced

# a complete snippet awaiting the backbone: (frames [16, H, W, 3] uint8, start_s, end_s, arrival of its last frame
# (time.monotonic()), its first frame [H, W, 3])
ReadySnippet = tuple[np.ndarray, float, float, float, np.ndarray]


def fit_frame(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` resized (bilinear) to ``shape`` ``(H, W, 3)``."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(image).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=shape[:2], mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


class SnippetLoop:
    """The scoring state of one source (see the module docstring). ``report`` is a
    :class:`~adplg.live.watch.WatchReport` the loop fills as it goes (counts, clock, scores); with ``keep_scores``
    False (a service running for months) the per-snippet score and time lists stay empty and no timeline is built.
    ``say``: where status lines go."""

    def __init__(self, src, reader, extractor, online, rules, report, say, alerts_cls: type[OnlineAlerts], *,
                 layout: SnippetLayout, keep_scores: bool = True):
        self.src, self.reader, self.extractor, self.online = src, reader, extractor, online
        self.rules, self.report, self.say = rules, report, say
        self.alerts_cls = alerts_cls
        self.layout = layout  # the checkpoint's snippet -> frame layout, for the final timeline
        self.keep_scores = keep_scores
        self.alerts: OnlineAlerts | None = None  # made once the first frame gives the fps
        self.fps = 0.0
        self.frames: list[Frame] = []  # the snippet being filled
        self.ready: list[ReadySnippet] = []  # complete, not yet encoded
        self.index = 0  # next snippet index
        self.taken = 0  # snippets taken (take) and not yet accepted (accept), in order
        keep = online.delay + extractor.batch_snippets + 4  # the whole batch of push_many is kept too
        # snippet index -> (start_s, end_s, last frame arrival, first frame); bounded to the last `keep` (+ pending)
        self.pending: OrderedDict[int, tuple[float, float, float]] = OrderedDict()
        self.first_frames: deque[tuple[int, np.ndarray]] = deque(maxlen=keep)
        self.last_frame: Frame | None = None  # the last frame handled (its time and arrival)
        self.shape: tuple[int, ...] | None = None  # the last frame's size as it arrived
        self.precision = "fp32"
        self.encode_every = report.encode_every
        self.held: np.ndarray | None = None  # the last encoded snippet's features [crops, D] (frame skipping)
        self.encode_seconds, self.encoded, self.encode_said = 0.0, 0, False
        self.after_outage = False  # the next frame starts a snippet after an outage

    # ---- hooks for the subclass
    def on_score(self, index: int, start_s: float, end_s: float, score: float, latency_s: float) -> None:
        """A snippet's final score (presentation times in seconds; ``latency_s``: its last frame's arrival -> now)."""

    def on_alert(self, event: AlertEvent) -> None:
        """An alert event (``started`` / ``updated`` / ``ended``) of :class:`~adplg.inference.online_alerts`."""

    def on_down(self, down: StreamDown) -> None:
        """The stream went down (after the alerts were cut and the scores before the outage were made final)."""

    def on_up(self, up: StreamUp) -> None:
        """The stream is back (before its first frame)."""

    def on_start(self, first: Frame) -> None:
        """The first frame arrived; the fps and the alerts are set (say what the loop is doing)."""

    # ---- frames -> snippets
    def run(self, stop: threading.Event) -> None:
        """Read the reader's queue until the stream ends or ``stop`` is set; encode when the batch is full or no
        frame waits (``report.stopped_by`` says which)."""
        while not stop.is_set():
            item = self.reader.get(timeout=0.1)
            if item is None:
                self.encode()
                continue
            if not self.handle(item):
                return
            if self.ready and (len(self.ready) >= self.extractor.batch_snippets or self.reader.queue.empty()):
                self.encode()
        self.report.stopped_by = "stop requested"

    def handle(self, item) -> bool:
        """One item of the reader's queue (a frame or a marker); False at :data:`END` (``report.stopped_by`` set)."""
        if item is END:
            self.report.stopped_by = "error" if self.reader.error is not None else "end of stream"
            return False
        if isinstance(item, StreamDown):
            self.stream_down(item)
        elif isinstance(item, StreamUp):
            self.on_up(item)
        else:
            self.frame(item)
        return True

    def start(self, first: Frame) -> None:
        """The first frame: the fps (declared, else assumed) and the alert state; then :meth:`on_start`."""
        fps, how = self.src.fps, "declared by the stream"
        if not fps > 0:
            fps, how = ASSUMED_FPS, "assumed (the stream declares none)"
        self.fps = fps
        self.report.fps, self.report.fps_source = fps, how
        self.alerts = self.alerts_cls(self.rules, fps)
        self.report.latency_s = self.online.delay * SNIPPET_FRAMES / fps
        self.on_start(first)

    def frame(self, frame: Frame) -> None:
        """Add one frame to the snippet being filled; a complete snippet joins :attr:`ready`."""
        if self.alerts is None:
            self.start(frame)
        self.last_frame = frame
        shape = frame.image.shape
        if self.shape is not None and shape != self.shape:
            self.report.resolution_changes += 1
            log.warning("%s: the frame size changed from %dx%d to %dx%d", self.src.name, self.shape[1],
                        self.shape[0], shape[1], shape[0])
        self.shape = shape
        if self.frames and shape != self.frames[0].image.shape:  # mid-snippet: fit it to the snippet's size
            frame.image = fit_frame(frame.image, self.frames[0].image.shape)
        self.frames.append(frame)
        if len(self.frames) == 1 and self.after_outage:
            self.after_outage = False  # the snippet before the outage keeps its own end
        if len(self.frames) == SNIPPET_FRAMES:
            if not self.report.clock:  # said once, from the first snippet (a stream's first frame may lack one)
                timed = any(f.timed for f in self.frames)
                self.report.clock = ("presentation times" if timed else
                                     f"frame index / {self.fps:g} fps (the stream has no presentation times)")
                self.say(f"times: {self.report.clock} (events, alert rules, CSV)")
            snippet = np.stack([f.image for f in self.frames])
            end_s = frame.time_s + (1.0 / self.fps)  # replaced by the next frame's start when it arrives
            self.ready.append((snippet, self.frames[0].time_s, end_s, frame.arrival, self.frames[0].image))
            self.frames = []
        elif len(self.frames) == 1 and not self.after_outage:  # a snippet ends where the next frame starts
            if self.ready:
                snip, start, _, arrival, first = self.ready[-1]
                self.ready[-1] = (snip, start, frame.time_s, arrival, first)
            elif self.index - 1 in self.pending:
                start, _, arrival = self.pending[self.index - 1]
                self.pending[self.index - 1] = (start, frame.time_s, arrival)

    # ---- snippets -> features -> scores
    def take(self, limit: int) -> tuple[list[ReadySnippet], list[np.ndarray]]:
        """Pop up to ``limit`` complete snippets of one frame size: ``(batch, fresh)``, ``fresh`` the snippets
        ``[16, H, W, 3]`` among them that go through the backbone (``encode_every``); give their features to
        :meth:`accept`, batches in the order they were taken."""
        batch: list[ReadySnippet] = []
        if not self.ready:
            return batch, []
        shape = self.ready[0][0].shape
        while self.ready and self.ready[0][0].shape == shape and len(batch) < limit:
            batch.append(self.ready.pop(0))
        first = self.index + self.taken  # the index of batch[0]: earlier batches may still await accept()
        fresh = [b[0] for n, b in enumerate(batch) if (first + n) % self.encode_every == 0]
        self.taken += len(batch)
        return batch, fresh

    def accept(self, batch: list[ReadySnippet], encoded: Iterator[np.ndarray]) -> None:
        """Score the snippets of ``batch`` (from :meth:`take`) with the features ``[crops, D]`` of its fresh
        snippets, in order; the others reuse the last encoded snippet's features."""
        features = []
        for _, start, end, arrival, first in batch:
            i = self.index
            self.index += 1
            self.taken -= 1
            if i % self.encode_every == 0:
                self.held = next(encoded)
            assert self.held is not None  # snippet 0 is always encoded
            features.append(self.held)
            self.pending[i] = (start, end, arrival)
            self.first_frames.append((i, first))
        if features:
            self.final(self.online.push_many(np.stack(features)))  # a causal model: one step for the batch

    def encode(self) -> None:
        """Encode every complete snippet with this loop's extractor (batches of ``batch_snippets``) and score it."""
        import torch

        from adplg.precision import autocast

        while self.ready:
            batch, fresh = self.take(self.extractor.batch_snippets)
            encoded: Iterator[np.ndarray] = iter(())
            if fresh:
                began = time.perf_counter()
                with torch.inference_mode(), autocast(self.extractor.device, self.precision):
                    encoded = iter(self.extractor.encode_snippets(fresh))  # [B', crops, D]
                self.measured_encode(time.perf_counter() - began, len(fresh))
            self.accept(batch, encoded)

    def measured_encode(self, seconds: float, snippets: int) -> None:
        """Account the backbone's time; once ``ENCODE_PROBE`` snippets are encoded, say what it adds to latency."""
        self.encode_seconds += seconds
        self.encoded += snippets
        self.report.encode_s_per_snippet = self.encode_seconds / self.encoded
        if not self.encode_said and self.encoded >= ENCODE_PROBE:
            self.encode_said = True
            per = self.report.encode_s_per_snippet * (1.0 / self.encode_every)
            budget = SNIPPET_FRAMES / self.fps
            verdict = ("keeping up" if per <= budget else
                       "slower than the stream: frames will wait in the queue, then be dropped")
            self.say(f"measured encode time: {self.report.encode_s_per_snippet:.3f} s per encoded snippet "
                     f"({per:.3f} s per snippet of video; the stream delivers one every {budget:.3f} s): {verdict}")

    # ---- final scores -> alerts
    def final(self, results: list[tuple[int, float]]) -> None:
        """Final snippet scores: the report, :meth:`on_score`, then the alerts (each event to :meth:`on_alert`)."""
        now = time.monotonic()
        offsets = np.arange(SNIPPET_FRAMES) / SNIPPET_FRAMES  # frames evenly spaced in a snippet, as the timeline
        for i, score in results:
            start, end, arrival = self.pending.pop(i)
            self.report.snippets += 1
            if self.keep_scores:
                self.report.snippet_scores.append(float(score))
                self.report.snippet_times.append((start, end))
            if len(self.report.latencies_s) < 10_000:
                self.report.latencies_s.append(now - arrival)
            self.on_score(i, start, end, float(score), now - arrival)
            assert self.alerts is not None  # made by start() before any snippet
            scores = np.full(SNIPPET_FRAMES, score, np.float64)
            for event in self.alerts.push(scores, times_s=start + (end - start) * offsets, end_s=end):
                self.on_alert(event)

    def first_frame_of(self, event: AlertEvent) -> np.ndarray:
        """The first frame of the snippet where ``event``'s alert starts (the oldest kept one when it is gone)."""
        snippet = event.start_frame // SNIPPET_FRAMES
        kept = [img for i, img in self.first_frames if i == snippet] or [self.first_frames[0][1]]
        return kept[0]

    # ---- outages and the end
    def stream_down(self, down: StreamDown) -> None:
        """The stream went down: the partial snippet is dropped (no snippet spans an outage), every snippet before
        it is scored now (the scorer is flushed), open alerts end, then :meth:`on_down`."""
        if self.frames:
            log.info("%s: %d frame(s) of a partial snippet before the outage are not scored", self.src.name,
                     len(self.frames))
            self.frames = []
        self.after_outage = True
        if self.alerts is not None:
            self.encode()
            self.final(self.online.flush())
            for event in self.alerts.cut():
                self.on_alert(event)
        self.on_down(down)

    def finish(self) -> None:
        """Encode what is complete, flush the scorer, close the alerts (the partial last snippet is dropped), and
        build the report's timeline (with ``keep_scores``)."""
        if self.alerts is None:
            return
        self.encode()
        self.final(self.online.flush())
        for event in self.alerts.close():
            self.on_alert(event)
        if self.keep_scores:
            self.report.timeline = self.timeline()

    def timeline(self) -> Timeline:
        """The final scores on the frames under the checkpoint's layout (see :mod:`adplg.live.watch`)."""
        layout, video_frames = self.layout, None
        if layout.kind == "spread":
            why = ("the stream did not end by itself" if self.report.stopped_by != "end of stream" else
                   f"{self.reader.dropped} frame(s) were dropped" if self.reader.dropped else
                   "no snippet was scored" if not self.report.snippet_scores else None)
            if why is None:
                video_frames = self.reader.frames  # every frame read, the partial last snippet's too
            else:
                log.warning("%s: the 'spread' snippet layout needs the video's whole frame count, unknown here (%s): "
                            "the timeline maps each snippet to its own %d frames", self.src.name, why, SNIPPET_FRAMES)
                layout = SnippetLayout(kind="uniform", frames_per_snippet=SNIPPET_FRAMES)
        times = np.asarray(self.report.snippet_times, np.float64).reshape(-1, 2)  # [T, 2]: (start_s, end_s)
        return build_timeline(self.src.name, np.asarray(self.report.snippet_scores, np.float64), layout=layout,
                              fps=self.fps, fps_source=self.report.fps_source, video_frames=video_frames,
                              snippet_start_s=times[:, 0], snippet_end_s=times[:, 1],
                              clock_snippet_frames=SNIPPET_FRAMES)
