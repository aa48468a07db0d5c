"""One camera of the service: its reader thread, its scoring state (a :class:`~adplg.live.snippets.SnippetLoop`
over the service's shared backbone and model), its alert events, clips and health.

States: ``starting`` (no frame yet), ``up``, ``reconnecting`` (the reader is retrying with backoff; counted as down
by ``/health``), ``down`` (the reader gave up after ``reader.max_retries``; a new reader is tried every
``reader.retry_down_s`` seconds, continuing the camera's clock from the wall clock), ``ended`` (a file source played
to its end), ``failed`` (a file that cannot be read), ``disabled``, ``stopped``.

Events (:class:`~adplg.service.events.ServiceEvent`, to every sink): an alert's ``new`` / ``update`` / ``end`` with
its id ``<camera>-<YYYYmmddTHHMMSS>-<n>`` (the wall clock of its start, ``n`` counting this camera's alerts since
the service started), a snapshot of its first frame and its clip; ``stream_down`` when a camera that delivered frames
stops (or when its reader gives up before any frame), ``stream_up`` with the outage's length when frames come again.
Stream times (``start_s`` / ``end_s``) are the camera's presentation times, as ``adplg watch`` reports them; wall
clock times are the frames' arrival times mapped back from the stream clock.
"""

from __future__ import annotations

import datetime
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adplg.alert_rules import AlertRules
from adplg.conventions import SNIPPET_FRAMES
from adplg.live.snippets import SnippetLoop
from adplg.live.sources import END, Frame, FrameReader, FrameSource, StreamDown, StreamUp
from adplg.service.config import CameraPlan, ClipsConfig
from adplg.service.events import ServiceEvent
from adplg.service.redact import redact_text, redact_url
from adplg.service.sinks import SinkSet

__all__ = ["DOWN_STATES", "Camera", "CameraLoop", "Shared", "ShiftedSource"]

log = logging.getLogger(__name__)

DOWN_STATES = ("reconnecting", "down", "failed")  # /health answers 503 while an enabled camera is in one of them
RATE_WINDOW_S = 10.0  # the real-time factor is measured over this many recent seconds


@dataclass(kw_only=True)
class Shared:
    """What every camera of a service shares: the model and backbone, the outputs and the metrics."""

    scorer: Any  # adplg.inference.scorer.Scorer
    extractor: Any  # adplg.features.extractors.FeatureExtractor (one instance for all cameras)
    sinks: SinkSet
    outputs: Path
    snapshots: bool
    clips: ClipsConfig
    window: int | None
    delay: int | None
    precision: str
    say: Callable[[str], None]
    observe_latency: Callable[[str, float], None] = lambda camera, seconds: None


def _iso(wall: datetime.datetime) -> str:
    return wall.isoformat(timespec="milliseconds")


class ShiftedSource(FrameSource):
    """``inner`` with every frame time (and the packet tap's clock) moved ``shift`` seconds later: a camera whose
    reader gave up continues its clock with a new reader."""

    def __init__(self, inner: FrameSource, shift: float):
        self.inner, self.shift = inner, float(shift)
        self.name = inner.name

    @property
    def live(self) -> bool:  # type: ignore[override]
        """The inner source's."""
        return self.inner.live

    @property
    def fps(self) -> float:  # type: ignore[override]
        """The inner source's."""
        return self.inner.fps

    @property
    def clock_offset(self) -> float:
        """The reader's offset of the current connection (the inner source holds it, shifted)."""
        return self.inner.clock_offset - self.shift

    @clock_offset.setter
    def clock_offset(self, value: float) -> None:
        self.inner.clock_offset = value + self.shift

    def frames(self):
        """The inner source's frames, ``shift`` seconds later."""
        for frame in self.inner.frames():
            frame.time_s += self.shift
            yield frame

    def interrupt(self) -> None:
        """Interrupt the inner source."""
        self.inner.interrupt()


class CameraLoop(SnippetLoop):
    """The scoring state of one camera; its final scores, alerts and outages go to its :class:`Camera`."""

    def __init__(self, camera: Camera, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.camera = camera

    def on_start(self, first: Frame) -> None:
        """Say the camera's size, frame rate and latency."""
        h, w = first.image.shape[:2]
        self.say(f"camera {self.camera.name}: {self.src.name}: {w}x{h} at {self.fps:g} fps "
                 f"({self.report.fps_source}); scores final {self.online.delay} snippets x {SNIPPET_FRAMES} frames / "
                 f"{self.fps:g} fps = {self.report.latency_s:.2f} s after the frames arrive, plus the backbone's "
                 f"time; alert threshold {self.rules.on_threshold:.4f}")

    def final(self, results: list[tuple[int, float]]) -> None:
        """Final scores, one at a time; after each, its score and the anomaly state go to the sinks."""
        for result in results:
            super().final([result])
            self.camera.state_after(result[1])

    def on_score(self, index: int, start_s: float, end_s: float, score: float, latency_s: float) -> None:
        """The score's latency to the camera's record and the metrics."""
        self.camera.latencies.append(latency_s)
        self.camera.shared.observe_latency(self.camera.name, latency_s)

    def on_alert(self, event) -> None:
        """An alert event to the camera (with the alert's first frame when it starts)."""
        self.camera.alert(event, self.first_frame_of(event) if event.kind == "started" else None)

    def on_down(self, down: StreamDown) -> None:
        """The reader's outage marker to the camera."""
        self.camera.went_down(down.at_s, down.wall, down.reason)

    def on_up(self, up: StreamUp) -> None:
        """The reader's end-of-outage marker to the camera."""
        self.camera.came_up(up.at_s, up.down_s)


class Camera:
    """One camera (see the module docstring). The service's loop calls :meth:`poll` (read queued frames),
    :meth:`maybe_retry`, and batches the backbone over cameras through ``loop.take`` / ``loop.accept``;
    :meth:`close` ends it (open alerts get their ``end`` event)."""

    def __init__(self, plan: CameraPlan, rules: AlertRules, rules_source: str, shared: Shared):
        from adplg.live.watch import WatchReport

        self.name, self.plan, self.rules, self.rules_source, self.shared = plan.name, plan, rules, rules_source, shared
        self.display = redact_url(plan.source)
        self.state = "starting" if plan.enabled else "disabled"
        self.src: FrameSource | None = None
        self.reader: FrameReader | None = None
        self.loop: CameraLoop | None = None
        self.recorder: Any = None  # adplg.service.clips.ClipRecorder when clips are on
        self.report = WatchReport(source=self.display, encode_every=plan.encode_every)
        self.past = {"frames": 0, "dropped": 0, "reconnect_attempts": 0, "reconnections": 0}  # of retired readers
        self.alerts = self.outages = self.retries = 0
        self.outage: dict | None = None  # the open outage: start_s, wall (time.monotonic()), start_wall
        self.open_alert: dict | None = None  # event_id, start_wall, snapshot, clip
        self.anomalous = False
        self.last_score: float | None = None
        self.retry_at: float | None = None
        self.last_error: str | None = None
        self.lag_s = 0.0
        self.latencies: deque[float] = deque(maxlen=1000)  # the last snippets' score latencies (seconds)
        self.consumed = 0  # frames handed to the scoring loop
        self.rate: deque[tuple[float, int]] = deque()  # (time.monotonic(), consumed) samples
        self._resumed = False  # a new reader after "down": its first frame ends the outage

    # ---- reading
    def start(self) -> None:
        """Open the source and start its reader (an enabled camera); a source that cannot be opened is reported
        ``down`` (a file: ``failed``), never raised."""
        if self.plan.enabled:
            self._connect(0.0)

    def _connect(self, shift: float) -> None:
        from adplg.live.sources import open_source

        reader_cfg = self.plan.reader
        try:
            src = open_source(self.plan.source, stall_timeout=reader_cfg.stall_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a missing file or a bad device: this camera only
            self._failed(f"{type(exc).__name__}: {exc}" if not str(exc).startswith("source") else str(exc), src=None)
            return
        src.name = self.display
        if self.shared.clips.enabled:
            self._record(src)
        source: FrameSource = src if shift == 0 else ShiftedSource(src, shift)
        self.src = source
        self.reader = FrameReader(source, queue_frames=reader_cfg.queue_frames, realtime=self.plan.realtime,
                                  max_retries=reader_cfg.max_retries, stall_timeout=reader_cfg.stall_timeout_s,
                                  backoff_s=reader_cfg.backoff_s, backoff_max_s=reader_cfg.backoff_max_s)
        if self.loop is None:
            self.loop = self._new_loop(source, self.reader)
        else:
            self.loop.src, self.loop.reader = source, self.reader
        self.reader.start()

    def _new_loop(self, source: FrameSource, reader: FrameReader) -> CameraLoop:
        from adplg.data.datasets import snippet_layout
        from adplg.inference.online_alerts import OnlineAlerts
        from adplg.live.online import OnlineScorer

        scorer, shared = self.shared.scorer, self.shared
        online = OnlineScorer(scorer.model, window=shared.window, delay=shared.delay, device=scorer.device,
                              precision=shared.precision, smooth_window=scorer.config.eval.smooth_window)
        self.report.delay = online.delay
        if (note := online.causal_note(scorer.config.eval.smooth_mode)) is not None:
            shared.say(f"{self.name}: {note}")
        loop = CameraLoop(self, source, reader, shared.extractor, online, self.rules, self.report,
                          lambda line: shared.say(redact_text(line)), OnlineAlerts,
                          layout=snippet_layout(scorer.config.data), keep_scores=False)
        loop.precision = shared.precision
        return loop

    def _record(self, src) -> None:
        """Clips: one :class:`~adplg.service.clips.ClipRecorder` per camera, fed by the source's packet tap."""
        if self.recorder is None:
            from adplg.live.online import default_delay
            from adplg.service.clips import ClipRecorder

            shared, clips = self.shared, self.shared.clips
            delay = shared.delay if shared.delay is not None else default_delay(shared.scorer.model)
            # how late an alert's start or end is known: the look-ahead (at 10 fps or more), the minimum duration,
            # and a margin for the backbone and the queue
            latency_s = delay * SNIPPET_FRAMES / 10.0 + self.rules.min_duration_s + 5.0
            self.recorder = ClipRecorder(shared.outputs / "clips" / self.name, self.name, pre_s=clips.pre_s,
                                         post_s=clips.post_s, latency_s=latency_s)
        src.packet_tap = self.recorder.packet

    def poll(self, limit: int) -> int:
        """Hand up to ``limit`` queued items to the scoring loop; returns how many. The reader's end is handled
        here (an ended file, or a reader that gave up: the camera is down until :meth:`maybe_retry`)."""
        reader, loop = self.reader, self.loop
        if reader is None or loop is None:
            return 0
        handled = 0
        while handled < limit:
            try:
                item = reader.queue.get_nowait()
            except queue.Empty:
                break
            handled += 1
            if item is END:
                self._reader_ended()
                return handled
            if isinstance(item, Frame):
                self._frame_arrived(item)
            loop.handle(item)
        if self.state == "starting" and reader.backoffs:  # the first connect failed: retrying
            self.state = "reconnecting"
        return handled

    def _frame_arrived(self, frame: Frame) -> None:
        now = time.monotonic()
        self.lag_s = now - frame.arrival
        self.consumed += 1
        self.rate.append((now, self.consumed))
        while self.rate and now - self.rate[0][0] > RATE_WINDOW_S:
            self.rate.popleft()
        if self._resumed:
            self._resumed = False
            self.past["reconnections"] += 1
            if self.outage is not None:
                self.came_up(frame.time_s, now - self.outage["wall"])
        if self.state != "up":
            self.state, self.last_error = "up", None

    def queue_empty(self) -> bool:
        """No frame waits in the reader's queue."""
        return self.reader is None or self.reader.queue.empty()

    def _retire_reader(self) -> None:
        """Stop the reader and keep its counters."""
        reader, self.reader = self.reader, None
        if reader is None:
            return
        reader.stop()
        for key in self.past:
            self.past[key] += getattr(reader, key)

    def _reader_ended(self) -> None:
        reader = self.reader
        assert reader is not None and self.loop is not None  # called from poll
        error, live = reader.error, reader.source.live
        self._retire_reader()
        if error is None or not live:
            if self.loop.alerts is not None:
                self.loop.finish()  # the end of a file: scores flushed, open alert ended
            self.state = "ended" if error is None else "failed"
            self.last_error = None if error is None else redact_text(str(error))
            self.shared.say(f"camera {self.name}: {self.state}" + (f": {self.last_error}" if error else ""))
            return
        self._failed(str(error), src=reader.source)

    def _failed(self, error: str, src: FrameSource | None) -> None:
        """The reader gave up (or the source could not be opened): down, retried in ``retry_down_s``."""
        self.last_error = redact_text(error)
        live = src.live if src is not None else "://" in self.plan.source or self.plan.source.startswith("/dev/")
        if not live:
            self.state = "failed"
            log.error("camera %s: %s", self.name, self.last_error)
            return
        if self.outage is None:  # a camera that never delivered frames (or whose outage was not reported)
            last = self.loop.last_frame if self.loop is not None else None
            self.went_down(last.time_s if last is not None else 0.0, last.arrival if last is not None
                           else time.monotonic(), self.last_error)
        self.state = "down"
        self.retry_at = time.monotonic() + self.plan.reader.retry_down_s
        log.warning("camera %s: down (%s); trying again in %g s", self.name, self.last_error,
                    self.plan.reader.retry_down_s)

    def maybe_retry(self, now: float) -> bool:
        """A ``down`` camera whose retry time has come gets a new reader, its clock continuing from the last frame
        plus the wall time since; returns whether it was retried."""
        if self.state != "down" or self.retry_at is None or now < self.retry_at:
            return False
        self.retry_at = None
        self.retries += 1
        last = self.loop.last_frame if self.loop is not None else None
        shift = 0.0
        if last is not None and self.loop is not None:
            shift = last.time_s + 1.0 / max(self.loop.fps, 1e-6) + (now - last.arrival)
        self.state, self._resumed = "reconnecting", True
        log.info("camera %s: trying again (%d)", self.name, self.retries)
        self._connect(shift)
        return True

    # ---- events
    def _wall(self, time_s: float) -> datetime.datetime:
        """The wall clock (UTC) of stream time ``time_s``, from the last frame's arrival."""
        now = datetime.datetime.now(datetime.timezone.utc)
        last = self.loop.last_frame if self.loop is not None else None
        if last is None:
            return now
        ago = (time.monotonic() - last.arrival) + (last.time_s - time_s)
        return now - datetime.timedelta(seconds=max(ago, 0.0))

    def _emit(self, event: ServiceEvent) -> None:
        self.shared.sinks.event(event)

    def state_after(self, score: float) -> None:
        """A snippet's final score, after its alert events: the score and the anomaly state to every sink."""
        self.last_score = score
        self.shared.sinks.state(self.name, self.anomalous, score)

    def alert(self, event, first_frame) -> None:
        """An :class:`~adplg.inference.online_alerts.AlertEvent` as a ``new`` / ``update`` / ``end`` event."""
        if event.kind == "started":
            self.alerts += 1
            start = self._wall(event.start_s)
            event_id = f"{self.name}-{start:%Y%m%dT%H%M%S}-{self.alerts}"
            snapshot = clip = None
            if self.shared.snapshots and first_frame is not None:
                from adplg.live.outputs import save_jpeg

                try:
                    snapshot = str(save_jpeg(first_frame, self.shared.outputs / "snapshots" / self.name /
                                             f"{event_id}.jpg"))
                except Exception as exc:  # noqa: BLE001 - a full disk must not stop the scoring
                    log.warning("camera %s: snapshot not written (%s)", self.name, exc)
            if self.recorder is not None:
                clip = str(self.recorder.begin(event_id, event.start_s, self._clip_info(event)))
            self.open_alert = {"event_id": event_id, "start_wall": _iso(start), "snapshot": snapshot, "clip": clip}
            self.anomalous = True
        if self.open_alert is None:  # cannot happen: OnlineAlerts starts every alert it updates or ends
            return
        kind = {"started": "new", "updated": "update", "ended": "end"}[event.kind]
        end_wall = _iso(self._wall(event.end_s)) if kind == "end" else None
        self._emit(ServiceEvent(kind=kind, camera=self.name, event_id=self.open_alert["event_id"],
                                start_s=event.start_s, end_s=event.end_s, start_wall=self.open_alert["start_wall"],
                                end_wall=end_wall, peak_score=event.peak_score, mean_score=event.mean_score,
                                snapshot=self.open_alert["snapshot"], clip=self.open_alert["clip"]))
        if kind == "end":
            if self.recorder is not None:
                self.recorder.finish(self.open_alert["event_id"], event.end_s, self._clip_info(event))
            self.open_alert, self.anomalous = None, False

    def _clip_info(self, event) -> dict:
        """The clip's JSON sidecar: the alert's scores, the rules and the checkpoint."""
        return {"camera": self.name, "start_s": event.start_s, "end_s": event.end_s, "peak_score": event.peak_score,
                "mean_score": event.mean_score, "rules": self.rules.to_dict(), "rules_source": self.rules_source,
                "checkpoint": [str(c) for c in self.shared.scorer.checkpoints]}

    def went_down(self, at_s: float, last_wall: float, reason: str) -> None:
        """The stream stopped (the alerts were cut): a ``stream_down`` event."""
        self.outages += 1
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
            seconds=max(time.monotonic() - last_wall, 0.0))
        self.outage = {"start_s": at_s, "wall": last_wall, "start_wall": _iso(start)}
        self.state = "reconnecting"
        log.warning("camera %s: stream down (%s)", self.name, redact_text(reason))
        self._emit(ServiceEvent(kind="stream_down", camera=self.name, start_s=at_s, start_wall=_iso(start)))

    def came_up(self, at_s: float, down_s: float) -> None:
        """Frames again after an outage: a ``stream_up`` event with its length (wall clock seconds)."""
        outage, self.outage = self.outage, None
        self.state = "up"
        if outage is None:
            return
        log.warning("camera %s: stream up after %.1f s", self.name, down_s)
        self._emit(ServiceEvent(kind="stream_up", camera=self.name, start_s=outage["start_s"], end_s=at_s,
                                start_wall=outage["start_wall"],
                                end_wall=_iso(datetime.datetime.now(datetime.timezone.utc)), outage_s=down_s))

    # ---- the end, and what /health and /metrics read
    def close(self) -> None:
        """Stop reading; flush the scores and end an open alert (its ``end`` event); close the open clips."""
        self._retire_reader()
        try:
            if self.loop is not None and self.loop.alerts is not None and self.state not in ("ended", "failed"):
                self.loop.finish()
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.state = "stopped" if self.plan.enabled else "disabled"

    def counters(self) -> dict[str, int]:
        """Totals over every reader this camera had: frames, dropped frames, reconnect attempts, reconnections
        (after an outage, a retry after ``down`` included), snippets, alerts, outages."""
        reader = self.reader
        now = {k: v + (getattr(reader, k) if reader is not None else 0) for k, v in self.past.items()}
        return {**now, "snippets": self.report.snippets, "alerts": self.alerts, "outages": self.outages}

    def realtime_factor(self) -> float | None:
        """Stream seconds scored per wall second over the last ``RATE_WINDOW_S`` seconds (1.0: keeping up with a
        live camera); None before two samples."""
        if len(self.rate) < 2 or self.loop is None or not self.loop.fps > 0:
            return None
        (t0, n0), (t1, n1) = self.rate[0], self.rate[-1]
        return (n1 - n0) / self.loop.fps / (t1 - t0) if t1 > t0 else None

    def health(self) -> dict:
        """The camera's health record (``/health``)."""
        rtf = self.realtime_factor()
        reader = self.reader
        latencies = list(self.latencies)  # a copy: the scoring loop appends while /health reads
        p95 = float(np.percentile(latencies, 95)) if latencies else None
        return {"state": self.state, "enabled": self.plan.enabled, "connected": self.state == "up",
                "source": self.display, "fps": self.loop.fps if self.loop is not None else None,
                "realtime_factor": None if rtf is None else round(rtf, 3), "lag_s": round(self.lag_s, 3),
                "queued_frames": reader.queue.qsize() if reader is not None else 0, **self.counters(),
                "alert_open": self.open_alert["event_id"] if self.open_alert else None,
                "last_score": self.last_score, "score_latency_p95_s": None if p95 is None else round(p95, 3),
                "last_error": self.last_error}
