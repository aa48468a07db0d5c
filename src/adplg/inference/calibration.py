"""Calibrating alert rules on normal footage to a target false-alarm rate, and the rate's tolerance.

The false-alarm rate of rules on normal footage is the fraction of its frames inside an alert
(:func:`false_alarm_rate`). Each step of the rules (:mod:`adplg.inference.alerts`) can only shrink the alerted frames
when the thresholds rise, so the rate is non-increasing in ``on_threshold`` and :func:`calibrate` is a bisection over
the score values of the normal videos. Its record says how far the achieved rate can be trusted on new footage
(:func:`binomial_interval`, :func:`footage_note`).

Reviewers' verdicts (:mod:`adplg.inference.verdicts`) add the footage of reviewed false alerts to the normal footage;
:meth:`Scorer.calibrate <adplg.inference.scorer.Scorer.calibrate>` scores both and records the verdicts used.
"""

from __future__ import annotations

import numpy as np

from adplg.errors import AdplgError
from adplg.inference.alerts import AlertRules, alert_mask, alert_segments, check_number

MIN_UNIT_S = 10.0  # shortest independent unit of footage for the binomial interval (seconds)
LITTLE_FOOTAGE_S = 30 * 60.0  # below this much normal footage (seconds) calibration records a footage_note
FEW_VIDEOS = 30  # ... or below this many normal videos


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
    """The lowest ``on_threshold`` (with ``off = max(on - hysteresis, 0)``) whose false-alarm rate on the normal
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

    def off(on: float) -> float:  # scores are >= 0, so an off threshold below 0 would act as 0
        return max(on - hysteresis, 0.0)

    base = AlertRules(on_threshold=1.0, off_threshold=off(1.0), min_duration_s=min_duration_s,
                      merge_gap_s=merge_gap_s)
    candidates = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in videos]))
    candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf))  # above every score: no alerts

    def far(i: int) -> float:
        on = float(candidates[i])
        return false_alarm_rate(videos, base.with_thresholds(on, off(on)))

    lo, hi = 0, len(candidates) - 1  # far(hi) == 0 <= target; find the first index with far <= target
    while lo < hi:
        mid = (lo + hi) // 2
        if far(mid) <= target_far:
            hi = mid
        else:
            lo = mid + 1
    on = float(candidates[lo])
    rules = base.with_thresholds(on, off(on))
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
