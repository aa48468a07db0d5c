"""Turning a score timeline into alert segments, and calibrating the alert rules on normal footage.

The rules are plain post-processing of the scores, kept in a small YAML file beside the model (never inside an
exported graph), so they can be re-calibrated per camera without touching the network:

1. hysteresis: an alert starts where the score reaches ``on_threshold`` and lasts while it stays at or above
   ``off_threshold`` (``off <= on``; equal thresholds mean no hysteresis);
2. merge gap: two alerts separated by at most ``merge_gap_s`` seconds become one;
3. minimum duration: alerts shorter than ``min_duration_s`` seconds are dropped.

Each step can only shrink the alerted frames when the thresholds rise, so the false-alarm rate (the fraction of
normal frames inside an alert) is non-increasing in ``on_threshold`` and calibration is a bisection over the score
values of the normal videos.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from adplg.errors import AdplgError

ALERTS_SUFFIX = ".alerts.yaml"
MIN_UNIT_S = 10.0  # shortest independent unit of footage for the binomial interval (seconds)
LITTLE_FOOTAGE_S = 30 * 60.0  # below this much normal footage (seconds) calibration records a footage_note
FEW_VIDEOS = 30  # ... or below this many normal videos


# scores are probabilities in [0, 1]; calibration's "no alerts at all" threshold is the float just above the highest
# normal score, which is 1 ulp above 1 when that score is exactly 1
SCORE_MAX = float(np.nextafter(1.0, 2.0))

# the command-line flag of each rule, named beside the key in errors
FLAGS = {"on_threshold": "--threshold", "off_threshold": "--off-threshold", "min_duration_s": "--min-duration",
         "merge_gap_s": "--merge-gap", "target_far": "--target-far, the target false-alarm rate",
         "hysteresis": "--hysteresis", "fps": "--fps"}


def check_number(where: str, name: str, value, *, low: float | None = None, low_open: bool = False,
                 high: float | None = None, high_open: bool = False) -> float:
    """``value`` as a float when it is a finite real number within the bounds, else an :class:`AdplgError` naming
    ``name`` (and its flag), the expected range and the value (``nan``, ``inf`` and strings are refused)."""
    flag = f" ({FLAGS[name]})" if name in FLAGS else ""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    expected = f"{name} {' and '.join(bounds)}{flag}, a finite number" if bounds else f"a finite {name}{flag}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise AdplgError(f"{where}: expected {expected}, got {value!r}")
    return float(value)


@dataclass
class AlertRules:
    """Alert post-processing. Times are in seconds; ``calibration`` records how the thresholds were chosen."""

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
            raise AdplgError(f"alert rules: expected off_threshold <= on_threshold (--off-threshold <= "
                             f"--threshold), got off {self.off_threshold} > on {self.on_threshold}")
        if not isinstance(self.calibration, dict):
            raise AdplgError(f"alert rules: expected calibration to be a mapping, got a "
                             f"{type(self.calibration).__name__}")

    def with_thresholds(self, on: float, off: float) -> AlertRules:
        return AlertRules(on, off, self.min_duration_s, self.merge_gap_s, dict(self.calibration))

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> Path:
        import yaml

        from adplg.io import atomic_write_text

        header = ("# adplg alert rules: post-processing of the snippet branch's scores (not part of any exported "
                  "graph).\n# Edit by hand or re-run `adplg calibrate`.\n")
        atomic_write_text(Path(path), header + yaml.safe_dump(self.to_dict(), sort_keys=False))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> AlertRules:
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
        except AdplgError as exc:
            raise AdplgError(f"alert rules file {path}: {str(exc).removeprefix('alert rules: ')}") from None


def rules_path_for(checkpoint: Path) -> Path:
    """Where the alert rules of a checkpoint live: ``<checkpoint without suffix>.alerts.yaml`` beside it."""
    from adplg.checkpoints.format import checkpoint_file

    weights = checkpoint_file(checkpoint)
    return weights.with_name(weights.stem + ALERTS_SUFFIX)


@dataclass
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
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
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


def _runs(mask: np.ndarray) -> np.ndarray:
    """``mask [N]`` bool -> ``[K, 2]`` ``[start, end)`` of its runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def alert_mask(frame_scores: np.ndarray, fps: float, rules: AlertRules) -> np.ndarray:
    """``frame_scores [N]`` -> ``[N]`` bool: frames inside an alert after hysteresis, merging and minimum duration."""
    check_number("alerts", "fps", fps, low=0, low_open=True)
    mask = hysteresis_mask(frame_scores, rules.on_threshold, rules.off_threshold)
    runs = _runs(mask)
    if len(runs) > 1 and rules.merge_gap_s > 0:
        close = (runs[1:, 0] - runs[:-1, 1]) <= rules.merge_gap_s * fps
        for start, end in zip(runs[:-1, 1][close], runs[1:, 0][close], strict=True):
            mask[start:end] = True
        runs = _runs(mask)
    if rules.min_duration_s > 0:
        for start, end in runs[(runs[:, 1] - runs[:, 0]) < rules.min_duration_s * fps]:
            mask[start:end] = False
    return mask


def alert_segments(frame_scores: np.ndarray, fps: float, rules: AlertRules) -> list[Segment]:
    """The alerts of one video's ``frame_scores [N]`` (frame ``i`` at ``i / fps`` seconds)."""
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    out = []
    for start, end in _runs(alert_mask(frame_scores, fps, rules)):
        part = frame_scores[start:end]
        out.append(Segment(int(start), int(end), start / fps, end / fps, float(part.max()), float(part.mean())))
    return out


def false_alarm_rate(videos: list[tuple[np.ndarray, float]], rules: AlertRules) -> float:
    """Fraction of the frames of normal videos ``[(frame_scores [N], fps), ...]`` that lie inside an alert."""
    alerted = sum(int(alert_mask(scores, fps, rules).sum()) for scores, fps in videos)
    total = sum(len(scores) for scores, _ in videos)
    return alerted / max(total, 1)


def _bootstrap_interval(videos, rules: AlertRules, rounds: int, seed: int) -> tuple[float, float]:
    """Resampling part of the interval: the spread of the calibration estimate comes from resampling its videos with
    replacement; a new sample of the same size has the same spread and is independent of it, hence
    ``rate +- 1.96 * sqrt(2) * std``. It says 0%-0% whenever no video has a false alarm."""
    alerted = np.array([alert_mask(s, fps, rules).sum() for s, fps in videos], dtype=np.float64)
    frames = np.array([len(s) for s, _ in videos], dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(videos), size=(rounds, len(videos)))
    spread = float(np.std(alerted[picks].sum(axis=1) / np.maximum(frames[picks].sum(axis=1), 1)))
    rate = alerted.sum() / max(frames.sum(), 1)
    half = 1.96 * np.sqrt(2.0) * spread
    return float(max(rate - half, 0.0)), float(min(rate + half, 1.0))


def interval_unit_s(videos, rules: AlertRules) -> float:
    """Length in seconds of one effectively independent unit of footage: the longest of :data:`MIN_UNIT_S`, the
    rules' minimum duration and the mean length of the alerts the rules raise on ``videos`` (false alarms come in
    runs of correlated snippets, so a frame is far from an independent trial)."""
    durations = [g.duration_s for s, fps in videos for g in alert_segments(s, fps, rules)]
    return float(max(MIN_UNIT_S, rules.min_duration_s, np.mean(durations) if durations else 0.0))


def effective_units(videos, unit_s: float) -> float:
    """How many independent units ``videos`` hold: each video's duration over ``unit_s``, at least 1 per video."""
    return float(sum(max(len(s) / fps / unit_s, 1.0) for s, fps in videos))


def binomial_interval(rate: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion observed as ``rate`` in ``n`` (possibly fractional) independent
    units: ``k = rate * n``; with ``k = 0`` the upper bound is ``1 - (0.025) ** (1 / n)``, about ``3.7 / n``."""
    from scipy.special import betaincinv

    n = max(float(n), 1.0)
    k = min(max(float(rate), 0.0), 1.0) * n
    tail = (1.0 - level) / 2.0
    low = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1.0, tail))
    high = 1.0 if k >= n else float(betaincinv(k + 1.0, n - k, 1.0 - tail))
    return low, high


def _far_prediction_interval(videos, rules: AlertRules, rounds: int, seed: int,
                             units: float | None = None) -> tuple[float, float]:
    """A 95% interval of the false-alarm rate on new normal footage of the same amount and kind as ``videos``: the
    union of the video-resampling interval (:func:`_bootstrap_interval`) and the binomial interval
    (:func:`binomial_interval`) of the rate over :func:`effective_units` units of :func:`interval_unit_s` seconds.
    The binomial part keeps little footage honest: no false alarm in ``n`` units bounds the rate by about
    ``3.7 / n``, not by 0."""
    boot_low, boot_high = _bootstrap_interval(videos, rules, rounds, seed)
    rate = false_alarm_rate(videos, rules)
    if units is None:
        units = effective_units(videos, interval_unit_s(videos, rules))
    bin_low, bin_high = binomial_interval(rate, units)
    return min(boot_low, bin_low), max(boot_high, bin_high)


def footage_note(videos, unit_s: float, units: float) -> str | None:
    """Why the interval is wide when the footage is little (under :data:`LITTLE_FOOTAGE_S` seconds or
    :data:`FEW_VIDEOS` videos), else None."""
    seconds = sum(len(s) / fps for s, fps in videos)
    if seconds >= LITTLE_FOOTAGE_S and len(videos) >= FEW_VIDEOS:
        return None
    zero_high = binomial_interval(0.0, units)[1]
    return (f"little footage: {seconds / 60:.1f} min in {len(videos)} normal video(s) is only {units:.1f} independent "
            f"{unit_s:g} s units (false alarms come in runs and cluster in a few videos), so the 95% interval is "
            f"wide: even with no false alarm its upper bound is {zero_high:.2%} (about 3.7 / units). Calibrate on "
            f"{LITTLE_FOOTAGE_S / 60:g}+ min from {FEW_VIDEOS}+ normal videos the model was not trained on to "
            f"narrow it")


def check_calibration(target_far: float, hysteresis: float = 0.0, min_duration_s: float = 0.0,
                      merge_gap_s: float = 0.0) -> None:
    """The arguments of :func:`calibrate`: ``0 <= target_far < 1`` and non-negative ``hysteresis``, minimum
    duration and merge gap, all finite; an :class:`AdplgError` naming the first bad one (cheap: call it before
    scoring the normal footage)."""
    check_number("calibrate", "target_far", target_far, low=0, high=1, high_open=True)
    check_number("calibrate", "hysteresis", hysteresis, low=0)
    check_number("calibrate", "min_duration_s", min_duration_s, low=0)
    check_number("calibrate", "merge_gap_s", merge_gap_s, low=0)


def calibrate(videos: list[tuple[np.ndarray, float]], target_far: float, hysteresis: float = 0.0,
              min_duration_s: float = 0.0, merge_gap_s: float = 0.0, bootstrap_rounds: int = 1000,
              seed: int = 0) -> AlertRules:
    """The lowest ``on_threshold`` (with ``off = on - hysteresis``) whose false-alarm rate on the normal
    ``videos [(frame_scores [N], fps), ...]`` is at most ``target_far``.

    ``calibration`` records the achieved rate, alerts per hour, the amount of footage used, and the rate's
    tolerance ``far_95_prediction_interval`` for new normal footage of the same amount and kind. That interval is
    the union (lowest low, highest high) of

    * resampling the videos with replacement (``rate +- 1.96 * sqrt(2) * std``), which captures false alarms that
      cluster in a few videos but says 0%-0% when no video has one; and
    * a Clopper-Pearson 95% binomial interval that treats the footage as ``n`` independent units
      (``interval_units``): each video's duration over ``interval_unit_s`` = max(10 s, ``min_duration_s``, the
      mean alert length), at least one unit per video. With no false alarm its upper bound is
      ``1 - 0.025 ** (1 / n)`` (about ``3.7 / n``, like the rule of three), so little footage gives a wide interval.

    Under 30 minutes of footage or under 30 videos, ``footage_note`` says why the interval is wide."""
    check_calibration(target_far, hysteresis, min_duration_s, merge_gap_s)
    if not videos:
        raise AdplgError("calibrate: no normal videos given")
    base = AlertRules(1.0, 1.0 - hysteresis, min_duration_s, merge_gap_s)
    candidates = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in videos]))
    candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))  # above every score: no alerts

    def far(i: int) -> float:
        on = float(candidates[i])
        return false_alarm_rate(videos, base.with_thresholds(on, on - hysteresis))

    lo, hi = 0, len(candidates) - 1  # far(hi) == 0 <= target; find the first index with far <= target
    while lo < hi:
        mid = (lo + hi) // 2
        if far(mid) <= target_far:
            hi = mid
        else:
            lo = mid + 1
    on = float(candidates[lo])
    rules = base.with_thresholds(on, on - hysteresis)
    achieved = false_alarm_rate(videos, rules)
    unit_s = interval_unit_s(videos, rules)
    units = effective_units(videos, unit_s)
    low, high = _far_prediction_interval(videos, rules, bootstrap_rounds, seed, units)
    seconds = sum(len(s) / fps for s, fps in videos)
    alerts = sum(len(alert_segments(s, fps, rules)) for s, fps in videos)
    rules.calibration = {"target_far": target_far, "achieved_far": achieved, "far_95_prediction_interval": [low, high],
                         "alerts_per_hour": alerts / max(seconds / 3600.0, 1e-12), "videos": len(videos),
                         "frames": int(sum(len(s) for s, _ in videos)), "hours": seconds / 3600.0,
                         "hysteresis": hysteresis, "interval_unit_s": unit_s, "interval_units": units}
    note = footage_note(videos, unit_s, units)
    if note:
        rules.calibration["footage_note"] = note
    return rules
