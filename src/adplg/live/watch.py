"""``adplg watch``: score a live camera, a network stream or a file as it plays, and raise alerts as they happen.

Pipeline (one source): a reader thread (:class:`adplg.live.sources.FrameReader`) decodes frames into a bounded
queue (a live source drops the oldest queued frame when the scorer falls behind; see ``stream``). The main loop cuts
the frames into consecutive 16-frame snippets, featurises each complete snippet with the checkpoint's backbone
through the very extractor of ``adplg extract`` (same preprocessing, same crops), scores it with
:class:`~adplg.live.online.OnlineScorer` (a snippet's score is final ``delay`` snippets later; a causal model: delay
0 and the offline score, said at start-up), repeats each final snippet score over its 16 frames and feeds them to
:class:`~adplg.inference.online_alerts.OnlineAlerts`.

One clock: every time a live timeline says (the events' ``start_s`` / ``end_s`` / ``duration_s``, the alert rules'
minimum duration and merge gap, the CSV, the snapshots' names) is the stream's presentation time, as ``adplg score``
says for the same file; a stream without timestamps uses frame index / fps instead, said once at start-up.

Latency: a score is final ``delay x 16 / fps`` seconds after its snippet's last frame arrived, plus the backbone's
encode time (measured and announced after the first snippets) and, when the scorer falls behind, the wait in the
frame queue. The start-up line says what it is made of; the final line reports the measured percentiles.

Timeline: when the watch ends, :attr:`WatchReport.timeline` lays the final snippet scores on the frames with
:func:`~adplg.inference.timeline.build_timeline` under the checkpoint's snippet layout (``data.layout``), as
``adplg score`` does for the same video. A ``spread`` layout (the R1 presets) spreads the snippets over the video's
whole frame count, which a stream only knows once it has ended: while it plays, the alerts, the events and their
frame numbers map each snippet to its own 16 frames (a warning says so at start-up), and at the end the timeline
follows the spread layout over the frames read when the stream ended by itself with no frame dropped (a file: the
same frame scores and times as ``adplg score``). A stream stopped, interrupted, failed or with dropped frames has no
known frame count: its timeline keeps the 16-frame mapping, with a warning.

Memory is bounded: at most ``queue_frames`` frames in the reader's queue, the snippet being filled, up to
``batch_snippets`` (8) complete snippets awaiting the backbone (when the backbone is slower than the source it
encodes up to 8 snippets per forward pass), the first frame of each of the last ``delay + 12`` snippets (snapshots),
the model's ``window`` snippets of features, and 4 bytes per scored snippet for the report (``snippet_scores``).

A frame whose size differs from the first frame of its snippet (a resolution change mid-stream) is resized to that
size (bilinear) so the snippet stays one array; snippets of different sizes are encoded separately, each resized by
the extractor as usual.

Frame skipping for a slow backbone (``encode_every = k > 1``, off by default): only snippets ``0, k, 2k, ...`` go
through the backbone; every other snippet reuses the features of the last encoded one, so the snippet branch still
sees one feature vector per snippet (the timeline, the look-ahead delay and the alerts are unchanged) while the
backbone's cost falls by ``k``. Its cost in frame AUC is measured by ``benchmarks/online_auc.py --encode-every k``
(docs/benchmarks.md).

Outputs (:class:`~adplg.live.outputs.WatchOutputs`), all written as they happen (so a crash loses nothing already
reported):

* events: one JSON object per line (``kind`` started/updated/ended, ``start_s`` / ``end_s`` / ``duration_s``
  presentation times, ``start_frame`` / ``end_frame`` counting the frames scored, ``peak_score``, ``mean_score``,
  ``source``, ``snapshot``, ``wall_time``) to stdout (``-``; a reader that goes away ends them quietly) or appended
  to a file, flushed per line;
* the timeline CSV (``snippet,start_s,end_s,score``, presentation times) appended as scores become final (an
  existing file with another header is refused);
* a JPEG of the alert's first frame for every ``started`` event in the snapshots folder (the first frame of each of
  the last ``delay + 12`` snippets is kept for this; an alert starting earlier gets the oldest kept frame);
* a webhook: every event POSTed as JSON from a background thread (bounded queue, retries with backoff); a slow or
  dead endpoint never blocks scoring: events that do not fit the queue are dropped and counted.

Stopping: :func:`watch` returns when the stream ends (a file), when ``stop`` (a ``threading.Event``) is set or on
``KeyboardInterrupt``; in every case the scorer is flushed, open alerts are closed and the outputs finished. A source
that cannot be (re)connected raises :class:`~adplg.errors.AdplgError` naming it, after the outputs are finished.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from adplg.conventions import SNIPPET_FRAMES
from adplg.data.gt import SnippetLayout
from adplg.errors import AdplgError
from adplg.inference.timeline import Timeline
from adplg.live.outputs import WatchOutputs
from adplg.live.snippets import SnippetLoop
from adplg.live.sources import Frame, FrameReader, FrameSource, StreamDown, StreamUp, open_source

__all__ = ["WatchReport", "check_delay", "watch"]

log = logging.getLogger(__name__)

@dataclass(kw_only=True)
class WatchReport:
    """What one :func:`watch` did. ``snippet_scores`` / ``snippet_times`` ((start_s, end_s) presentation times):
    every final score in order, kept for the whole run (a few dozen bytes per snippet: about 5 MB a day at 30 fps);
    ``latencies_s``: the first 10 000 delays from a snippet's last frame arrival to its final score. ``stopped_by``:
    "end of stream", "stop requested", "interrupt" or "error". ``timeline``: the per-frame timeline built when the
    watch ended (see the module docstring; None when no frame arrived)."""

    source: str
    fps: float = 0.0
    fps_source: str = ""
    clock: str = ""
    delay: int = 0
    latency_s: float = 0.0
    encode_s_per_snippet: float = 0.0
    encode_every: int = 1
    frames: int = 0
    snippets: int = 0
    dropped_frames: int = 0
    reconnect_attempts: int = 0
    reconnections: int = 0
    stalls: int = 0
    outages: list[dict] = field(default_factory=list)
    resolution_changes: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    events: list[dict] = field(default_factory=list)
    snippet_scores: list[float] = field(default_factory=list)
    snippet_times: list[tuple[float, float]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    webhook: dict = field(default_factory=dict)
    timeline: Timeline | None = None

    @property
    def frame_scores(self) -> np.ndarray:
        """Every frame's score: the timeline's (its layout's mapping) once the watch has ended, else each snippet
        score repeated over its 16 frames (what the alerts see while the stream plays)."""
        if self.timeline is not None:
            return self.timeline.frame_scores
        return np.repeat(np.asarray(self.snippet_scores, np.float64), SNIPPET_FRAMES)

    def latency_percentiles(self) -> dict:
        """p50, p95 and max of the snippet latencies in seconds (arrival of its last frame to its final score)."""
        if not self.latencies_s:
            return {}
        p50, p95 = np.percentile(self.latencies_s, [50, 95])
        return {"p50": float(p50), "p95": float(p95), "max": float(max(self.latencies_s))}

    def to_dict(self) -> dict:
        """The report as a JSON-ready mapping, without the per-snippet lists and the timeline."""
        out = asdict(self)
        for key in ("snippet_scores", "snippet_times", "latencies_s", "timeline"):
            out.pop(key)
        return {**out, "latency_percentiles_s": self.latency_percentiles()}


# ------------------------------------------------------------------------------------------------------ helpers
def _wall_time() -> str:
    """Now, UTC, ISO 8601 with milliseconds (the ``wall_time`` of an event)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _load_scorer(scorer_or_checkpoint, device: str):
    from adplg.inference.scorer import Scorer, load

    if isinstance(scorer_or_checkpoint, Scorer):
        return scorer_or_checkpoint
    return load(scorer_or_checkpoint, device=device)


def check_delay(delay: int | None, window: int | None) -> None:
    """An explicit ``delay`` must leave the snippet in the ``window``-snippet buffer when it is scored
    (``delay <= window - 1``); else an :class:`AdplgError` about ``delay`` naming both values. ``window`` None (the
    model's default) is checked once the model is loaded."""
    if delay is not None and window is not None and int(delay) > int(window) - 1:
        raise AdplgError(f"watch: expected delay <= window - 1 = {int(window) - 1} snippets (a snippet must still be "
                         f"in the buffer when it is scored), got delay {delay} with window {window}; raise window or "
                         f"lower delay", parameter="delay")


# ------------------------------------------------------------------------------------------------------ the loop
def watch(source: str | Path | FrameSource, scorer_or_checkpoint, *, weights: str | Path | None = None,
          backbone: str | None = None, crops: int = 1, realtime: bool = False, window: int | None = None,
          delay: int | None = None, rules=None, events: str | Path | IO | None = None,
          csv_path: str | Path | None = None, snapshots: str | Path | None = None, webhook: str | None = None,
          webhook_secret: bytes | str | None = None,
          queue_frames: int = 256, device: str = "auto", max_retries: int = 5, stall_timeout: float = 10.0,
          backoff_s: float = 0.5, backoff_max_s: float = 30.0, precision: str | None = None,
          encode_every: int = 1, stop: threading.Event | None = None, announce: Callable[[str], None] | None = None,
          on_event: Callable[[dict], None] | None = None, extractor=None, overwrite: bool = False) -> WatchReport:
    """Score ``source`` live (a URL, ``/dev/videoN``, a video file, or a :class:`FrameSource`) with a checkpoint (or a
    loaded :class:`~adplg.inference.scorer.Scorer`); see the module docstring. ``rules``: the
    :class:`~adplg.alert_rules.AlertRules` (default: the scorer's). ``events``: a path (appended), ``"-"``
    (stdout) or an open text file. ``announce``: where status lines go (default: the log). ``on_event``: called
    with every event record. ``extractor``: an already built feature extractor (else built from ``weights``).
    ``encode_every``: run the backbone on every ``k``-th snippet only (see the module docstring). ``window`` /
    ``delay``: see :class:`~adplg.live.online.OnlineScorer` (None: the model's defaults).
    ``webhook_secret``: signs every webhook POST (see :class:`~adplg.live.outputs.WebhookPoster`). ``overwrite``: write
    into a ``snapshots`` folder holding alert JPEGs an earlier watch did not write (see :class:`WatchOutputs`)."""
    from adplg.data.datasets import snippet_layout
    from adplg.inference.online_alerts import OnlineAlerts
    from adplg.live.online import OnlineScorer

    if isinstance(encode_every, bool) or not isinstance(encode_every, int) or encode_every < 1:
        raise AdplgError(f"watch: expected an integer >= 1, got {encode_every!r}", parameter="encode_every")

    say = announce or log.info
    stop = stop or threading.Event()
    src = source if isinstance(source, FrameSource) else open_source(str(source), stall_timeout=stall_timeout)
    reader = FrameReader(src, queue_frames=queue_frames, realtime=realtime, max_retries=max_retries,
                         stall_timeout=stall_timeout, backoff_s=backoff_s, backoff_max_s=backoff_max_s)
    check_delay(delay, window)
    # before any loading; nothing is created until loaded
    WatchOutputs.check(events, csv_path, snapshots, webhook, overwrite)
    report = WatchReport(source=src.name)
    scorer = _load_scorer(scorer_or_checkpoint, device)
    rules = rules or scorer.rules
    if extractor is None:
        from adplg.features.extractors import extractor_for_model

        extractor = extractor_for_model(scorer.config.data.feature_dim, weights, backbone=backbone, crops=crops,
                                        device=scorer.device, video=src.name)
    online = OnlineScorer(scorer.model, window=window, delay=delay, device=scorer.device,
                          precision=precision or scorer.config.eval.precision,
                          smooth_window=scorer.config.eval.smooth_window)
    if not online.causal:  # (a causal model's window fits its delay)
        check_delay(delay, online.window)
    if delay is None and online.delay < online.requested_delay:
        say(f"the model's default delay of {online.requested_delay} snippets exceeds window {online.window} - 1: "
            f"using delay {online.delay} (scores are made before all of their local context has arrived)")
    if (note := online.causal_note(scorer.config.eval.smooth_mode)) is not None:
        say(note)
    outputs = WatchOutputs(events, csv_path, snapshots, webhook, src.name, webhook_secret=webhook_secret,
                           overwrite=overwrite)
    report.delay = online.delay
    report.encode_every = int(encode_every)
    state = _WatchLoop(src, reader, extractor, online, rules, outputs, report, say, on_event, OnlineAlerts,
                  layout=snippet_layout(scorer.config.data))
    state.precision = online.precision  # the backbone runs under the same autocast as the scorer (fp32: none)
    started = time.monotonic()
    reader.start()
    try:
        state.run(stop)
    except KeyboardInterrupt:
        report.stopped_by = "interrupt"
    finally:
        reader.stop()
        try:
            state.finish()
        finally:
            report.webhook = outputs.close()
            report.seconds = time.monotonic() - started
            report.frames, report.dropped_frames = reader.frames, reader.dropped
            report.reconnect_attempts, report.reconnections = reader.reconnect_attempts, reader.reconnections
            report.stalls, report.outages = reader.stalls, [dict(o) for o in reader.outages]
    if reader.error is not None and report.stopped_by == "error":
        raise reader.error
    return report


class _WatchLoop(SnippetLoop):
    """The state of one watch (a :class:`~adplg.live.snippets.SnippetLoop`) writing its scores, events and snapshots
    to the watch's outputs."""

    def __init__(self, src, reader, extractor, online, rules, outputs, report, say, on_event, alerts_cls, *,
                 layout: SnippetLayout):
        super().__init__(src, reader, extractor, online, rules, report, say, alerts_cls, layout=layout)
        self.outputs, self.on_event = outputs, on_event
        self.alert_number = 0

    def on_start(self, first: Frame) -> None:
        fps, latency = self.fps, self.report.latency_s
        queue_s = self.reader.queue.maxsize / fps
        h, w = first.image.shape[:2]
        self.say(f"watching {self.src.name}: {w}x{h} at {fps:g} fps ({self.report.fps_source}); scores "
                 f"are final {self.online.delay} snippets x {SNIPPET_FRAMES} frames / {fps:g} fps = {latency:.2f} s "
                 f"after the frames arrive, plus the backbone's encode time (measured below) and, when the scorer "
                 f"falls behind, the wait in the frame queue (up to {self.reader.queue.maxsize} frames = "
                 f"{queue_s:.2f} s); alert threshold {self.rules.on_threshold:.4f}")
        if self.encode_every > 1:
            self.say(f"frame skipping: the backbone encodes every {self.encode_every}th snippet; the others reuse "
                     "the last encoded snippet's features")
        if self.layout.kind == "spread":
            log.warning("%s: the checkpoint's snippet layout is 'spread' (snippets spread over the video's whole frame "
                        "count, unknown while the stream plays): live alerts and events map each snippet to its own "
                        "%d frames; the final timeline follows the spread layout if the stream ends by itself",
                        self.src.name, SNIPPET_FRAMES)

    def on_score(self, index: int, start_s: float, end_s: float, score: float, latency_s: float) -> None:
        self.outputs.row(index, start_s, end_s, score)

    def on_alert(self, event) -> None:
        record = {"source": self.src.name, **event.to_dict(), "wall_time": _wall_time()}
        if event.kind == "started":
            self.alert_number += 1
            path = self.outputs.snapshot(self.first_frame_of(event), self.alert_number, event.start_s)
            if path is not None:
                record["snapshot"] = path
                self.report.snapshots.append(path)
        self._publish(record)

    def on_down(self, down: StreamDown) -> None:
        """A ``stream-down`` event (the alerts were cut and the scores before the outage made final)."""
        self._publish({"kind": "stream-down", "source": self.src.name, "at_s": down.at_s, "reason": down.reason,
                       "wall_time": _wall_time()})

    def on_up(self, up: StreamUp) -> None:
        """The stream is back: a ``stream-up`` event with the outage's length (wall clock) and the attempts."""
        self._publish({"kind": "stream-up", "source": self.src.name, "at_s": up.at_s, "down_s": round(up.down_s, 6),
                       "attempts": up.attempts, "wall_time": _wall_time()})

    def _publish(self, record: dict) -> None:
        """One event record to the report, the outputs (JSON lines, webhook) and ``on_event``."""
        self.report.events.append(record)
        self.outputs.event(record)
        if self.on_event is not None:
            self.on_event(record)
