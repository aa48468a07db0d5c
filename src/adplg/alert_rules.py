"""Alert rules and what they make of a score timeline: alert masks and segments, and the lowest threshold that keeps a
false-alarm rate. Plain NumPy (no model, no files but the rules' own YAML), so evaluation (time to detect) and inference
(``adplg score`` / ``watch`` / ``calibrate``) apply the same rules.

The rules, in order:

1. hysteresis: an alert starts where the score reaches ``on_threshold`` and lasts while it stays at or above
   ``off_threshold`` (``off <= on``; equal thresholds mean no hysteresis);
2. merge gap: two alerts separated by at most ``merge_gap_s`` seconds become one;
3. minimum duration: alerts shorter than ``min_duration_s`` seconds are dropped.

Each step can only shrink the alerted frames when both thresholds rise together, so the share of frames inside an
alert is non-increasing in ``on_threshold`` (at a fixed ``on - off``): :func:`lowest_on_threshold` bisects on it.
Which rules apply to a model (its rules file, flags) is :mod:`adplg.inference.alerts`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adplg.errors import AdplgError

# scores are probabilities in [0, 1]; calibration's "no alerts at all" threshold is the float just above the highest
# normal score, which is 1 ulp above 1 when that score is exactly 1
SCORE_MAX = float(np.nextafter(1.0, 2.0))

# what a number is, said beside its name in errors where the name alone does not say it
DESCRIPTIONS = {"target_far": "the target false-alarm rate"}


def check_number(where: str, name: str, value, *, low: float | None = None, low_open: bool = False,
                 high: float | None = None, high_open: bool = False) -> float:
    """``value`` as a float when it is a finite real number within the bounds, else an :class:`AdplgError` about
    the parameter ``name`` (the command line names its flag instead) saying ``where`` it was checked, the expected
    range and the value (``nan``, ``inf`` and strings are refused)."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    described = f" ({DESCRIPTIONS[name]})" if name in DESCRIPTIONS else ""
    expected = (f"{name} {' and '.join(bounds)}{described}, a finite number" if bounds
                else f"a finite {name}{described}")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise AdplgError(f"{where}: expected {expected}, got {value!r}", parameter=name)
    return float(value)


@dataclass(kw_only=True)
class AlertRules:
    """Alert post-processing. Times are in seconds; ``calibration`` records how the thresholds were chosen.
    ``off_threshold`` defaults to ``on_threshold`` (no hysteresis). A bad value is an :class:`AdplgError` about its
    field (``on_threshold`` ...)."""

    on_threshold: float = 0.5
    off_threshold: float | None = None
    min_duration_s: float = 0.0
    merge_gap_s: float = 0.0
    calibration: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.off_threshold is None:
            self.off_threshold = self.on_threshold
        self.on_threshold = check_number("alert rules", "on_threshold", self.on_threshold, low=0, high=SCORE_MAX)
        self.off_threshold = check_number("alert rules", "off_threshold", self.off_threshold, low=0, high=SCORE_MAX)
        self.min_duration_s = check_number("alert rules", "min_duration_s", self.min_duration_s, low=0)
        self.merge_gap_s = check_number("alert rules", "merge_gap_s", self.merge_gap_s, low=0)
        if self.off_threshold > self.on_threshold:
            raise AdplgError(f"alert rules: expected off_threshold <= on_threshold, got off {self.off_threshold} > "
                             f"on {self.on_threshold}", parameter="off_threshold")
        if not isinstance(self.calibration, dict):
            raise AdplgError(f"alert rules: expected calibration to be a mapping, got a "
                             f"{type(self.calibration).__name__}")

    def with_thresholds(self, on: float, off: float) -> AlertRules:
        """These rules with other thresholds (a copy of the calibration record)."""
        return replace(self, on_threshold=on, off_threshold=off, calibration=dict(self.calibration))

    def to_dict(self) -> dict:
        """The rules as a plain mapping (the fields of the YAML file)."""
        return asdict(self)

    def save(self, path: Path) -> Path:
        """Write the rules as YAML (with a comment header) to ``path``, atomically; returns ``path``."""
        import yaml

        from adplg.io import atomic_write_text

        header = ("# adplg alert rules: post-processing of the snippet branch's scores (not part of any exported "
                  "graph).\n# Edit by hand or re-run `adplg calibrate`.\n")
        atomic_write_text(Path(path), header + yaml.safe_dump(self.to_dict(), sort_keys=False))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> AlertRules:
        """The rules of the YAML file ``path``; a missing file or a bad value is an AdplgError naming the file."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise AdplgError(f"alert rules file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError) as exc:
            raise AdplgError(f"alert rules file {path}: cannot be read as text ({type(exc).__name__}); expected the "
                             f"YAML written by adplg calibrate") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise AdplgError(f"alert rules file {path} is not valid YAML "
                             f"({getattr(exc, 'problem', None) or type(exc).__name__}{where})") from None
        known = {"on_threshold", "off_threshold", "min_duration_s", "merge_gap_s", "calibration"}
        if not isinstance(data, dict):
            raise AdplgError(f"alert rules file {path}: expected a mapping with some of {sorted(known)}, got a "
                             f"{type(data).__name__}")
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise AdplgError(f"alert rules file {path}: unknown keys {unknown} (expected some of {sorted(known)})")
        try:
            return cls(**data)
        except AdplgError as exc:  # a key of the file, not a parameter: the detail names it
            raise AdplgError(f"alert rules file {path}: {exc.detail.removeprefix('alert rules: ')}") from None



@dataclass(kw_only=True)
class Segment:
    """One alert: frames ``[start_frame, end_frame)`` and the same span in seconds."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float

    @property
    def duration_s(self) -> float:
        """The alert's length in seconds (``end_s - start_s``)."""
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        """The alert as a plain mapping, with its duration."""
        return {**asdict(self), "duration_s": round(self.duration_s, 6)}


def hysteresis_mask(scores: np.ndarray, on: float, off: float) -> np.ndarray:
    """``scores [N]`` -> alert state ``[N]`` (bool): on at ``score >= on``, off at ``score < off``, else unchanged
    (starting off). Compared in float64: NumPy compares float32 scores with a Python float in float32, which would
    round a threshold just above a score (calibration's "no alerts" threshold) down onto it."""
    scores = np.asarray(scores, dtype=np.float64)
    event = np.where(scores >= on, 1, np.where(scores < off, 0, -1))
    last_event = np.maximum.accumulate(np.where(event >= 0, np.arange(len(scores)), -1))
    state = np.where(last_event >= 0, event[np.maximum(last_event, 0)], 0)
    return state == 1


def mask_runs(mask: np.ndarray) -> np.ndarray:
    """``mask [N]`` bool -> ``[K, 2]`` ``[start, end)`` of its runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def check_frame_edges(frame_edges_s, frames: int, where: str = "alerts") -> np.ndarray:
    """``frame_edges_s`` as float64 ``[frames + 1]`` seconds (each frame's start, then the end of the last frame),
    finite and non-decreasing; an :class:`AdplgError` naming ``where`` otherwise."""
    edges = np.asarray(frame_edges_s, dtype=np.float64)
    if edges.shape != (frames + 1,) or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) < 0):
        raise AdplgError(f"{where}: expected {frames + 1} finite, non-decreasing frame edges in seconds (each frame's "
                         f"start, then the end of the last frame), got shape {list(edges.shape)}")
    return edges


def _hysteresis_runs(frame_scores: np.ndarray, fps: float, rules: AlertRules,
                     edges: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(mask [N], runs [K, 2])`` after hysteresis and merging, before the minimum duration."""
    assert rules.off_threshold is not None  # AlertRules.__post_init__ sets it
    mask = hysteresis_mask(frame_scores, rules.on_threshold, rules.off_threshold)
    runs = mask_runs(mask)
    if len(runs) > 1 and rules.merge_gap_s > 0:
        if edges is None:
            close = (runs[1:, 0] - runs[:-1, 1]) <= rules.merge_gap_s * fps
        else:
            close = (edges[runs[1:, 0]] - edges[runs[:-1, 1]]) <= rules.merge_gap_s
        for start, end in zip(runs[:-1, 1][close], runs[1:, 0][close], strict=True):
            mask[start:end] = True
        runs = mask_runs(mask)
    return mask, runs


def _too_short(runs: np.ndarray, fps: float, rules: AlertRules, edges: np.ndarray | None) -> np.ndarray:
    """``[K]`` bool: the runs shorter than the rules' minimum duration."""
    if rules.min_duration_s <= 0:
        return np.zeros(len(runs), dtype=bool)
    if edges is None:
        return (runs[:, 1] - runs[:, 0]) < rules.min_duration_s * fps
    return (edges[runs[:, 1]] - edges[runs[:, 0]]) < rules.min_duration_s


def alert_mask(frame_scores: np.ndarray, fps: float, rules: AlertRules,
               frame_edges_s: np.ndarray | None = None) -> np.ndarray:
    """``frame_scores [N]`` -> ``[N]`` bool: frames inside an alert after hysteresis, merging and minimum duration.

    Durations and gaps are measured on ``frame_edges_s [N + 1]`` seconds (each frame's start, then the end of the
    last frame: a video's real clock) when given, else frame ``i`` is at ``i / fps``."""
    check_number("alerts", "fps", fps, low=0, low_open=True)
    edges = None if frame_edges_s is None else check_frame_edges(frame_edges_s, len(frame_scores))
    mask, runs = _hysteresis_runs(frame_scores, fps, rules, edges)
    for start, end in runs[_too_short(runs, fps, rules, edges)]:
        mask[start:end] = False
    return mask


def dropped_runs(frame_scores: np.ndarray, fps: float, rules: AlertRules,
                 frame_edges_s: np.ndarray | None = None) -> np.ndarray:
    """``[K, 2]`` ``[start, end)`` frames of the spans that reached the on threshold (after hysteresis and merging)
    but raised no alert because they were shorter than ``rules.min_duration_s`` (clock as in :func:`alert_mask`)."""
    check_number("alerts", "fps", fps, low=0, low_open=True)
    edges = None if frame_edges_s is None else check_frame_edges(frame_edges_s, len(frame_scores))
    _, runs = _hysteresis_runs(frame_scores, fps, rules, edges)
    return runs[_too_short(runs, fps, rules, edges)].reshape(-1, 2)


def alert_segments(frame_scores: np.ndarray, fps: float, rules: AlertRules,
                   frame_edges_s: np.ndarray | None = None) -> list[Segment]:
    """The alerts of one video's ``frame_scores [N]``: frame ``i`` at ``frame_edges_s[i]`` seconds when given
    (``[N + 1]``, see :func:`alert_mask`), else at ``i / fps``."""
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    edges = None if frame_edges_s is None else check_frame_edges(frame_edges_s, len(frame_scores))
    out = []
    for start, end in mask_runs(alert_mask(frame_scores, fps, rules, edges)):
        part = frame_scores[start:end]
        start_s, end_s = (start / fps, end / fps) if edges is None else (float(edges[start]), float(edges[end]))
        out.append(Segment(start_frame=int(start), end_frame=int(end), start_s=start_s, end_s=end_s,
                           peak_score=float(part.max()), mean_score=float(part.mean())))
    return out




def lowest_on_threshold(normal_scores: np.ndarray, rate_of: Callable[[AlertRules], float], target_rate: float,
                        template: AlertRules, hysteresis: float, where: str = "calibrate") -> AlertRules:
    """``template`` (its merge gap and minimum duration) with ``on = t`` and ``off = t - hysteresis`` at the lowest
    candidate ``t`` whose ``rate_of(rules) <= target_rate`` (``rate_of``: e.g. the share of the normal frames inside
    an alert).

    Candidates, ascending: every distinct value of ``normal_scores [N]`` (all the normal footage's scores, in
    ``[0, 1]``) at or above ``hysteresis``, so every empirical quantile and the search is exact, then the lowest
    value above every score (no alert at all, rate 0; never below ``hysteresis``, so ``off`` is never negative). The
    bisection keeps the upper end at a candidate that meets the target, so the rules returned always meet it (even
    for a ``rate_of`` that were not monotone); as the rate is non-increasing in ``t`` (module docstring) they are the
    lowest that do. Scores outside ``[0, 1]`` or not finite are an :class:`AdplgError` naming ``where``."""
    scores = np.unique(np.asarray(normal_scores, dtype=np.float64).reshape(-1))
    if scores.size and not (np.isfinite(scores).all() and scores[0] >= 0 and scores[-1] <= 1):
        raise AdplgError(f"{where}: expected normal footage scores in [0, 1], got values from {scores[0]:g} to "
                         f"{scores[-1]:g}")
    above_all = max(float(np.nextafter(scores[-1], np.inf)) if scores.size else 0.0, hysteresis)
    candidates = np.append(scores[scores >= hysteresis], above_all)

    def rules_at(i: int) -> AlertRules:  # on >= hysteresis, so off = on - hysteresis >= 0 exactly in floating point
        on = float(candidates[i])
        return template.with_thresholds(on, on - hysteresis)

    lo, hi = 0, len(candidates) - 1  # rate(hi) == 0 <= target; find the first index with rate <= target
    while lo < hi:
        mid = (lo + hi) // 2
        if rate_of(rules_at(mid)) <= target_rate:
            hi = mid
        else:
            lo = mid + 1
    return rules_at(lo)
