"""Streaming alerts: the alert segments of :func:`adplg.alert_rules.alert_segments` (hysteresis, merge gap,
minimum duration) from per-frame scores that arrive a few at a time, as events, keeping only constant state (no
score history). ``adplg watch`` feeds it the scores of :class:`adplg.live.online.OnlineScorer`.

Clocks: without frame times (``push(scores)``) frame ``i`` is at ``i / fps`` and the rules' durations are compared in
frames (``min_duration_s * fps``, exactly as :func:`~adplg.alert_rules.alert_mask`). With frame times
(``push(scores, times_s=..., end_s=...)``, a stream's presentation times) every time an event says and every rule
(minimum duration, merge gap) is measured on those times, so a variable frame rate or a gap in the stream (an outage)
counts as the seconds it lasted. One instance uses one clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from adplg.alert_rules import AlertRules, Segment, check_number, hysteresis_mask
from adplg.errors import AdplgError

__all__ = ["AlertEvent", "OnlineAlerts"]


@dataclass(kw_only=True)
class AlertEvent:
    """A change in an alert: ``started`` (certain to last ``min_duration_s``), ``updated`` (grew, or a higher peak),
    ``ended`` (final). ``end_s`` is the end so far for ``started`` / ``updated``. Frames are ``[start_frame,
    end_frame)`` of the frames pushed; times are seconds on the instance's clock (``frame / fps``, or the frame
    times pushed)."""

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
    """Streaming :func:`adplg.alert_rules.alert_segments` under the same :class:`AlertRules`.

    ``push(frame_scores)`` consumes the next consecutive per-frame scores (frame ``i`` at ``i / fps`` seconds, or at
    the ``times_s`` given: see the module docstring) and returns the events that became certain; ``cut()`` marks a
    break in the stream (an outage: the open alert ends at its last run, nothing merges across); ``close()`` ends the
    stream and returns the rest. Replaying a score
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
        self._timed: bool | None = None  # the clock: frame times pushed (True) or frame / fps (False); first push
        self._min_len = self._gap_len = 0.0  # the rules in clock units (frames or seconds), set by the first push
        self._n = 0  # frames consumed
        self._on = False  # hysteresis state of the last frame
        self._start: int | None = None  # open alert: frames [start, end) up to the end of its last run
        self._end = 0
        self._t_start = self._t_end = 0.0  # the same on the clock (frames, or seconds)
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

    def _seconds(self, position: float) -> float:
        return float(position) if self._timed else position / self.fps

    def _event(self, kind: str) -> AlertEvent:
        assert self._start is not None and self._end is not None  # called while an alert is open
        return AlertEvent(kind=kind, start_s=self._seconds(self._t_start), end_s=self._seconds(self._t_end),
                          peak_score=self._stats.peak, mean_score=self._stats.mean, start_frame=self._start,
                          end_frame=self._end)

    def _check_started(self, events: list[AlertEvent]) -> None:
        if not self._started and not (self._t_end - self._t_start) < self._min_len:
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
            self._done.append(Segment(start_frame=self._start, end_frame=self._end,
                                      start_s=self._seconds(self._t_start), end_s=self._seconds(self._t_end),
                                      peak_score=self._stats.peak, mean_score=self._stats.mean))
        self._start, self._started, self._reported = None, False, None
        self._stats, self._gap = _Stats(), _Stats()

    def _clock(self, n: int, times_s, end_s) -> np.ndarray:
        """The ``[n + 1]`` frame boundaries of the next ``n`` frames on this instance's clock (set by the first
        push: seconds when times are given, else frames)."""
        if (times_s is None) != (end_s is None):
            raise AdplgError(f"OnlineAlerts: expected both times_s and end_s or neither, got only "
                             f"{'times_s' if end_s is None else 'end_s'}", parameter="times_s")
        timed = times_s is not None
        if self._timed is None:
            self._timed = timed
            scale = 1.0 if timed else self.fps  # the same products alert_mask compares against, in frames
            self._min_len, self._gap_len = self.rules.min_duration_s * scale, self.rules.merge_gap_s * scale
        elif timed != self._timed:
            raise AdplgError(f"OnlineAlerts: expected {'frame times' if self._timed else 'no frame times'} as in the "
                             f"first push, got {'frame times' if timed else 'none'}", parameter="times_s")
        if not timed:
            return np.arange(self._n, self._n + n + 1, dtype=np.float64)
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        if len(times) != n:
            raise AdplgError(f"OnlineAlerts: expected {n} frame times (one per score), got {len(times)}",
                             parameter="times_s")
        return np.append(times, float(end_s))

    def push(self, frame_scores: np.ndarray, times_s: np.ndarray | None = None,
             end_s: float | None = None) -> list[AlertEvent]:
        """Consume the next frames' scores ``[n]``; returns the events that became certain. ``times_s [n]``: each
        frame's start time in seconds and ``end_s`` the end of the last one (both or neither; see the module
        docstring)."""
        if self._closed:
            raise AdplgError("OnlineAlerts: push() after close()")
        scores = np.asarray(frame_scores, dtype=np.float64).reshape(-1)
        events: list[AlertEvent] = []
        clock = self._clock(len(scores), times_s, end_s)  # [n + 1]
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
                    self._t_start = float(clock[a])
                    self._stats.add(part)
                elif ga == self._end:  # the open alert's run continues
                    self._end = gb
                    self._stats.add(part)
                else:  # a new run within the merge gap (a longer gap closed the alert below)
                    self._stats.merge(self._gap)
                    self._gap = _Stats()
                    self._stats.add(part)
                    self._end = gb
                self._t_end = float(clock[b])
                self._check_started(events)
            elif self._start is not None:
                self._gap.add(part)
                if clock[b] - self._t_end > self._gap_len:  # a run starting at frame gb or later can no longer merge
                    self._finish(events)
        self._n += len(scores)
        self._on = bool(mask[-1])
        if self._started and self._reported != (self._end, self._stats.peak):
            self._reported = (self._end, self._stats.peak)
            if not events or events[-1].kind != "started" or events[-1].end_frame != self._end:
                events.append(self._event("updated"))
        return events

    def cut(self) -> list[AlertEvent]:
        """A break in the stream (an outage): the open alert ends at the end of its last run (``ended``, or dropped
        when shorter than the minimum duration) and nothing merges across the break; the hysteresis state starts
        again off. Frames keep their numbering."""
        if self._closed:
            raise AdplgError("OnlineAlerts: cut() after close()")
        events: list[AlertEvent] = []
        self._finish(events)
        self._on = False
        return events

    def close(self) -> list[AlertEvent]:
        """End of stream: the open alert ends at the last frame (``ended``, or dropped when too short)."""
        if self._closed:
            return []
        events: list[AlertEvent] = []
        self._finish(events)
        self._closed = True
        return events
