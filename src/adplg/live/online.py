"""Online scoring: snippet scores and alerts while a video stream is still arriving (``adplg watch``).

:class:`OnlineScorer` keeps a ring buffer of the last ``window`` snippets' features and runs the snippet branch over
it each time a snippet arrives (:func:`~adplg.models.apply.video_snippet_scores`, as offline scoring does). Snippet
``i`` is *emitted* (its score becomes final) once snippet ``i + delay`` has arrived, scored with the buffer that ends
at ``i + delay``; :meth:`OnlineScorer.flush` emits the rest at the end of the stream, scored with the buffer that
ends at the last snippet.

How close this is to the offline score (the whole video in one forward pass):

* the local windows (``|i - j| <= w`` for ``w`` in the model's windows) and the ``k = 3`` embedding convolution see
  ``max(windows) + 1`` snippets ahead: with ``delay >= default_delay(model)`` every snippet's *local* context is
  complete when it is scored;
* the global transformer attends the whole sequence and the local blocks add learned *absolute* positional
  embeddings (row 0 at the first snippet of the forward pass). Online, the sequence is the buffer: it lacks the
  snippets after ``i + delay`` and, once more than ``window`` snippets have arrived, those before the buffer, whose
  first snippet then takes position 0. So scores differ from offline unless ``window >= T`` and every snippet is
  scored with the whole video in the buffer (``delay >= T - 1``, or a flush at the end).

Smoothing (``eval.smooth_window``, a *centred* moving average offline) is not applied unless ``smooth_window > 0`` is
given; then each emitted score is the *trailing* mean of the last ``smooth_window`` raw scores (a causal
approximation, lagging the centred average by about ``(smooth_window - 1) / 2`` snippets, and adding no latency).

:class:`OnlineAlerts` turns a stream of per-frame scores into the alert segments of
:func:`adplg.inference.alerts.alert_segments` (hysteresis, merge gap, minimum duration) as events, keeping only
constant state (no score history).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from adplg.errors import AdplgError
from adplg.inference.alerts import AlertRules, Segment, check_number, hysteresis_mask
from adplg.models.apply import video_snippet_scores

__all__ = ["AlertEvent", "OnlineAlerts", "OnlineScorer", "default_delay", "model_windows"]


def model_windows(model: nn.Module) -> tuple[int, ...]:
    """The local-attention half-windows of a snippet branch (or of every member of an ensemble), read from the
    model's :class:`~adplg.models.local_attention.LocalWindowTransformer` blocks, else its ``windows`` attribute."""
    from adplg.models.local_attention import LocalWindowTransformer

    windows = [int(m.window) for m in model.modules() if isinstance(m, LocalWindowTransformer)]
    if not windows:
        for m in model.modules():  # e.g. a scripted model keeps the plain attribute
            found = getattr(m, "windows", None)
            if found:
                windows.extend(int(w) for w in found)
    if not windows:
        raise AdplgError(f"cannot find the local-attention windows of {type(model).__name__}; pass delay= explicitly")
    return tuple(sorted(set(windows)))


def _conv_reach(model: nn.Module) -> int:
    """Look-ahead of the temporal embedding convolution(s): ``(kernel - 1) // 2`` (1 for the ``k = 3`` conv)."""
    from adplg.models.snippet_branch import TemporalConvEmbedding

    reach = [(m.conv.kernel_size[0] - 1) // 2 for m in model.modules() if isinstance(m, TemporalConvEmbedding)]
    return max(reach) if reach else 1


def default_delay(model: nn.Module) -> int:
    """Snippets of look-ahead the snippet branch needs for a score to stop changing from its local context:
    ``max(windows) + 1`` (the ``k = 3`` embedding convolution reaches one snippet further). Read from the model."""
    return max(model_windows(model)) + _conv_reach(model)


class OnlineScorer:
    """Scores a stream of snippet features as they arrive, over a ring buffer of the last ``window`` snippets.

    ``push(features)`` takes one snippet's features, ``[D]`` or ``[crops, D]`` (crop scores are averaged after the
    forward pass, as offline), and returns the ``(snippet_index, score)`` pairs that became final: snippet ``i`` is
    emitted once snippet ``i + delay`` has arrived. ``flush()`` emits the rest at the end of the stream.

    ``delay`` defaults to :func:`default_delay`; it is capped at ``window - 1`` (a snippet must still be in the
    buffer when it is scored), and :attr:`delay` is the value in use. ``window`` may not exceed the model's
    ``max_len``. The model is put in eval mode on ``device``; scoring runs under ``torch.no_grad`` and the
    ``precision`` of :func:`adplg.precision.autocast`. One forward pass of at most ``window`` snippets per push.
    ``smooth_window > 0``: emitted scores are the trailing mean of the last ``smooth_window`` raw scores (see the
    module docstring).
    """

    def __init__(self, model: nn.Module, window: int = 256, delay: int | None = None,
                 device: torch.device | str = "cpu", precision: str = "fp32", smooth_window: int = 0):
        window = int(window)
        max_len = getattr(model, "max_len", None)
        if window < 1:
            raise AdplgError(f"online scoring: expected window >= 1 snippet, got {window}")
        if max_len is not None and window > int(max_len):
            raise AdplgError(f"online scoring: window {window} exceeds the model's max_len {int(max_len)} (its "
                             f"positional embedding rows)")
        requested = default_delay(model) if delay is None else int(delay)
        if requested < 0:
            raise AdplgError(f"online scoring: expected delay >= 0 snippets, got {requested}")
        if int(smooth_window) < 0:
            raise AdplgError(f"online scoring: expected smooth_window >= 0, got {smooth_window}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.window = window
        self.requested_delay = requested
        self._delay = min(requested, window - 1)
        self.smooth_window = int(smooth_window)
        self._recent: deque[float] = deque(maxlen=max(self.smooth_window, 1))
        self._buffer: torch.Tensor | None = None  # [crops, 2 * window, D]: each snippet written twice (see _view)
        self._seen = 0  # snippets pushed
        self._next = 0  # first snippet not yet emitted

    @property
    def delay(self) -> int:
        """Snippets of look-ahead in use (``min(requested delay, window - 1)``)."""
        return self._delay

    @property
    def latency_snippets(self) -> int:
        return self._delay

    @property
    def snippets_seen(self) -> int:
        return self._seen

    def _store(self, features: np.ndarray) -> None:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise AdplgError(f"online scoring: expected one snippet's features [D] or [crops, D], got shape "
                             f"{list(x.shape)}")
        if self._buffer is None:
            self._buffer = torch.zeros(x.shape[0], 2 * self.window, x.shape[1], device=self.device)
        elif tuple(x.shape) != (self._buffer.shape[0], self._buffer.shape[2]):
            raise AdplgError(f"online scoring: snippet {self._seen} has shape {list(x.shape)}, but the stream started "
                             f"with [{self._buffer.shape[0]}, {self._buffer.shape[2]}] (crops, D)")
        slot = self._seen % self.window
        x = x.to(self.device)
        self._buffer[:, slot] = x  # written twice, so the last `window` snippets are always one contiguous slice
        self._buffer[:, slot + self.window] = x
        self._seen += 1

    def _view(self) -> tuple[torch.Tensor, int]:
        """The buffered snippets, oldest first, ``[crops, L, D]``, and the stream index of the first one."""
        newest = self._seen - 1
        length = min(self._seen, self.window)
        end = newest % self.window + self.window + 1
        return self._buffer[:, end - length:end], newest - length + 1

    def _scores(self) -> tuple[np.ndarray, int]:
        """Scores ``[L]`` (float64) of the buffered snippets, crops averaged, and the stream index of the first."""
        view, first = self._view()
        scores = video_snippet_scores(self.model, view, device=self.device, precision=self.precision)  # [L]
        return scores.astype(np.float64), first

    def _emit(self, upto: int) -> list[tuple[int, float]]:
        """Emit snippets ``self._next .. upto`` (inclusive) from one forward pass over the current buffer."""
        if upto < self._next:
            return []
        scores, first = self._scores()
        out = []
        for i in range(self._next, upto + 1):
            score = float(scores[i - first])
            if self.smooth_window > 0:
                self._recent.append(score)
                score = float(sum(self._recent) / len(self._recent))
            out.append((i, score))
        self._next = upto + 1
        return out

    def push(self, features: np.ndarray) -> list[tuple[int, float]]:
        """Add one snippet (``[D]`` or ``[crops, D]``); returns the ``(index, score)`` pairs that became final."""
        self._store(features)
        return self._emit(self._seen - 1 - self._delay)

    def flush(self) -> list[tuple[int, float]]:
        """End of stream: emit every snippet not yet emitted (scored with the buffer ending at the last snippet)."""
        if self._seen == 0:
            return []
        return self._emit(self._seen - 1)


@dataclass
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
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
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
        return self._n

    def _event(self, kind: str) -> AlertEvent:
        return AlertEvent(kind, self._start / self.fps, self._end / self.fps, self._stats.peak, self._stats.mean,
                          self._start, self._end)

    def _check_started(self, events: list[AlertEvent]) -> None:
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
            self._done.append(Segment(self._start, self._end, self._start / self.fps, self._end / self.fps,
                                      self._stats.peak, self._stats.mean))
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
