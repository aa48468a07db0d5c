"""Streaming alerts: the alert segments of :func:`adplg.inference.alerts.alert_segments` (hysteresis, merge gap,
minimum duration) from per-frame scores that arrive a few at a time, as events, keeping only constant state (no
score history). ``adplg watch`` feeds it the scores of :class:`adplg.live.online.OnlineScorer`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from adplg.errors import AdplgError
from adplg.inference.alerts import AlertRules, Segment, check_number, hysteresis_mask

__all__ = ["AlertEvent", "OnlineAlerts"]


@dataclass(kw_only=True)
class AlertEvent:
    """A change in an alert: ``started`` (certain to last ``min_duration_s``), ``updated`` (grew, or a higher peak),
    ``ended`` (final). ``end_s`` is the end so far for ``started`` / ``updated``. Frames are ``[start_frame,
    end_frame)`` of the stream; times are ``frame / fps``."""

    kind: str
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float
    start_frame: int = 0
    end_frame: int = 0

    @property
    def duration_s(self) -> float:
        """The alert's length so far in seconds (``end_s - start_s``)."""
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        """The event as a plain mapping, with its duration."""
        return {**asdict(self), "duration_s": round(self.duration_s, 6)}


class _Stats:
    """Count, compensated (Neumaier) sum and max of a run of float64 scores."""

    __slots__ = ("count", "total", "carry", "peak")

    def __init__(self):
        self.count, self.total, self.carry, self.peak = 0, 0.0, 0.0, -math.inf

    def add_sum(self, value: float, count: int, peak: float) -> None:
        t = self.total + value
        self.carry += (self.total - t) + value if abs(self.total) >= abs(value) else (value - t) + self.total
        self.total = t
        self.count += count
        self.peak = max(self.peak, peak)

    def add(self, part: np.ndarray) -> None:
        if len(part):
            self.add_sum(math.fsum(part.tolist()), len(part), float(part.max()))

    def merge(self, other: _Stats) -> None:
        if other.count:
            self.add_sum(other.total, other.count, other.peak)
            self.add_sum(other.carry, 0, -math.inf)

    @property
    def mean(self) -> float:
        return (self.total + self.carry) / self.count


class OnlineAlerts:
    """Streaming :func:`adplg.inference.alerts.alert_segments` under the same :class:`AlertRules`.

    ``push(frame_scores)`` consumes the next consecutive per-frame scores (frame ``i`` at ``i / fps`` seconds) and
    returns the events that became certain; ``close()`` ends the stream and returns the rest. Replaying a score
    array in chunks of any size gives the segments of ``alert_segments(scores, fps, rules)``: same frames, times and
    peak; the mean is a compensated running sum (equal to ``numpy.mean`` to ~1e-15 relative, not bit for bit).

    * ``started``: once the alert is certain to survive ``min_duration_s`` (so up to ``min_duration_s`` late);
    * ``updated``: at the end of a ``push`` in which a started alert grew (at most one per push);
    * ``ended``: once ``merge_gap_s`` has passed below the threshold with no new run (or at ``close()``).

    Memory is constant: the open alert and the gap after it are kept as running statistics; :meth:`segments` lists
    the finished alerts.
    """

    def __init__(self, rules: AlertRules, fps: float):
        self.rules = rules
        self.fps = check_number("alerts", "fps", fps, low=0, low_open=True)
        self._min_frames = rules.min_duration_s * self.fps  # the same products alert_mask compares against
        self._gap_frames = rules.merge_gap_s * self.fps
        self._n = 0  # frames consumed
        self._on = False  # hysteresis state of the last frame
        self._start: int | None = None  # open alert: [start, end) up to the end of its last run
        self._end = 0
        self._stats = _Stats()
        self._gap = _Stats()  # frames after the open alert's last run
        self._started = False
        self._reported: tuple[int, float] | None = None  # (end, peak) of the last started/updated event
        self._done: list[Segment] = []
        self._closed = False

    def segments(self) -> list[Segment]:
        """The finished alerts so far."""
        return list(self._done)

    @property
    def frames_seen(self) -> int:
        """The number of frame scores pushed so far."""
        return self._n

    def _event(self, kind: str) -> AlertEvent:
        assert self._start is not None  # called while an alert is open
        return AlertEvent(kind=kind, start_s=self._start / self.fps, end_s=self._end / self.fps,
                          peak_score=self._stats.peak, mean_score=self._stats.mean, start_frame=self._start,
                          end_frame=self._end)

    def _check_started(self, events: list[AlertEvent]) -> None:
        assert self._start is not None  # called while an alert is open
        if not self._started and not (self._end - self._start) < self._min_frames:
            self._started = True
            self._reported = (self._end, self._stats.peak)
            events.append(self._event("started"))

    def _finish(self, events: list[AlertEvent]) -> None:
        """Close the open alert: kept (``ended``) unless shorter than the minimum duration."""
        if self._start is None:
            return
        self._check_started(events)
        if self._started:
            events.append(self._event("ended"))
            self._done.append(Segment(start_frame=self._start, end_frame=self._end, start_s=self._start / self.fps,
                                      end_s=self._end / self.fps, peak_score=self._stats.peak,
                                      mean_score=self._stats.mean))
        self._start, self._started, self._reported = None, False, None
        self._stats, self._gap = _Stats(), _Stats()

    def push(self, frame_scores: np.ndarray) -> list[AlertEvent]:
        """Consume the next frames' scores ``[n]``; returns the events that became certain."""
        if self._closed:
            raise AdplgError("OnlineAlerts: push() after close()")
        scores = np.asarray(frame_scores, dtype=np.float64).reshape(-1)
        events: list[AlertEvent] = []
        if not len(scores):
            return events
        on, off = self.rules.on_threshold, self.rules.off_threshold
        assert off is not None  # AlertRules.__post_init__ sets it
        mask = hysteresis_mask(scores, on, off)
        undecided = np.flatnonzero((scores >= on) | (scores < off))  # frames that set the state themselves
        head = undecided[0] if len(undecided) else len(scores)
        mask[:head] = self._on  # before the first deciding frame the state carries over from the last chunk
        edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), len(scores)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            part, ga, gb = scores[a:b], self._n + a, self._n + b
            if mask[a]:
                if self._start is None:
                    self._start, self._end = ga, gb
                    self._stats.add(part)
                elif ga == self._end:  # the open alert's run continues
                    self._end = gb
                    self._stats.add(part)
                else:  # a new run within the merge gap (a longer gap closed the alert below)
                    self._stats.merge(self._gap)
                    self._gap = _Stats()
                    self._stats.add(part)
                    self._end = gb
                self._check_started(events)
            elif self._start is not None:
                self._gap.add(part)
                if gb - self._end > self._gap_frames:  # a run starting at frame gb or later can no longer merge
                    self._finish(events)
        self._n += len(scores)
        self._on = bool(mask[-1])
        if self._started and self._reported != (self._end, self._stats.peak):
            self._reported = (self._end, self._stats.peak)
            if not events or events[-1].kind != "started" or events[-1].end_frame != self._end:
                events.append(self._event("updated"))
        return events

    def close(self) -> list[AlertEvent]:
        """End of stream: the open alert ends at the last frame (``ended``, or dropped when too short)."""
        if self._closed:
            return []
        events: list[AlertEvent] = []
        self._finish(events)
        self._closed = True
        return events
