"""Calibrating alert rules on normal footage to a target false-alarm rate, and the rate's tolerance.

The false-alarm rate of rules on normal footage is the fraction of its frames inside an alert
(:func:`false_alarm_rate`). Each step of the rules (:mod:`adplg.alert_rules`) can only shrink the alerted frames
when the thresholds rise, so the rate is non-increasing in ``on_threshold`` and :func:`calibrate` is a bisection over
the score values of the normal videos (:func:`~adplg.alert_rules.lowest_on_threshold`). Its record says how far the
achieved rate can be trusted on new footage (:func:`binomial_interval`, :func:`footage_note`).

Reviewers' verdicts (:mod:`adplg.inference.verdicts`) add the footage of reviewed false alerts to the normal footage;
:meth:`Scorer.calibrate <adplg.inference.scorer.Scorer.calibrate>` scores both and records the verdicts used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adplg.alert_rules import AlertRules, alert_mask, alert_segments, check_number, lowest_on_threshold
from adplg.errors import AdplgError

MIN_UNIT_S = 10.0  # shortest independent unit of footage for the binomial interval (seconds)
LITTLE_FOOTAGE_S = 30 * 60.0  # below this much normal footage (seconds) calibration records a footage_note
FEW_VIDEOS = 30  # ... or below this many normal videos


@dataclass(frozen=True, kw_only=True)
class Footage:
    """One normal video to calibrate on: ``frame_scores [N]`` and its clock, ``clock_edges_s [N + 1]`` seconds (each
    frame's start, then the end of the last frame: the container's presentation times) when known, else frame ``i``
    at ``i / fps``. A :class:`~adplg.inference.timeline.Timeline` has the same three attributes."""

    frame_scores: np.ndarray
    fps: float
    clock_edges_s: np.ndarray | None = None


def as_footage(video) -> Footage:
    """``video``: a ``(frame_scores [N], fps)`` pair, or anything with ``frame_scores``, ``fps`` and
    ``clock_edges_s`` (a :class:`Footage`, a timeline)."""
    if isinstance(video, tuple):
        scores, fps = video
        return Footage(frame_scores=np.asarray(scores), fps=fps)
    return Footage(frame_scores=np.asarray(video.frame_scores), fps=video.fps, clock_edges_s=video.clock_edges_s)


def _alerted(video: Footage, rules: AlertRules) -> np.ndarray:
    return alert_mask(video.frame_scores, video.fps, rules, video.clock_edges_s)


def _segments(video: Footage, rules: AlertRules):
    return alert_segments(video.frame_scores, video.fps, rules, video.clock_edges_s)


def _seconds(video: Footage, mask: np.ndarray | None = None) -> float:
    """The video's duration in seconds (its real clock, else frames / fps), or that of the frames in ``mask``."""
    if video.clock_edges_s is None:
        count = len(video.frame_scores) if mask is None else int(mask.sum())
        return count / video.fps
    durations = np.diff(np.asarray(video.clock_edges_s, dtype=np.float64))
    return float(durations.sum() if mask is None else durations[mask].sum())


def _alerted_and_total_s(videos: list[Footage], rules: AlertRules) -> tuple[np.ndarray, np.ndarray]:
    """Per video, ``(alerted seconds [V], seconds [V])``."""
    alerted = np.array([_seconds(v, _alerted(v, rules)) for v in videos], dtype=np.float64)
    total = np.array([_seconds(v) for v in videos], dtype=np.float64)
    return alerted, total


def false_alarm_rate(videos, rules: AlertRules) -> float:
    """Share of the time of normal ``videos`` (see :func:`as_footage`: ``[(frame_scores [N], fps), ...]``,
    :class:`Footage` or timelines) that lies inside an alert, on each video's real clock when it has one. With
    frame times ``i / fps`` at one rate this is the share of frames inside an alert."""
    footage = [as_footage(v) for v in videos]
    if all(v.clock_edges_s is None for v in footage) and len({v.fps for v in footage}) <= 1:
        alerted = sum(int(_alerted(v, rules).sum()) for v in footage)  # exact counts: no rounding of seconds
        return alerted / max(sum(len(v.frame_scores) for v in footage), 1)
    alerted_s, total_s = _alerted_and_total_s(footage, rules)
    return float(alerted_s.sum() / total_s.sum()) if total_s.sum() > 0 else 0.0


def _bootstrap_interval(videos: list[Footage], rules: AlertRules, rounds: int, seed: int) -> tuple[float, float]:
    """Resampling part of the interval: the spread of the calibration estimate comes from resampling its videos with
    replacement; a new sample of the same size has the same spread and is independent of it, hence
    ``rate +- 1.96 * sqrt(2) * std``. It says 0%-0% whenever no video has a false alarm."""
    alerted, seconds = _alerted_and_total_s(videos, rules)
    picks = np.random.default_rng(seed).integers(0, len(videos), size=(rounds, len(videos)))
    totals = seconds[picks].sum(axis=1)
    spread = float(np.std(alerted[picks].sum(axis=1) / np.where(totals > 0, totals, 1.0)))
    rate = false_alarm_rate(videos, rules)
    half = 1.96 * np.sqrt(2.0) * spread
    return float(max(rate - half, 0.0)), float(min(rate + half, 1.0))


def interval_unit_s(videos, rules: AlertRules) -> float:
    """Length in seconds of one effectively independent unit of footage: the longest of :data:`MIN_UNIT_S`, the
    rules' minimum duration and the mean length of the alerts the rules raise on ``videos`` (false alarms come in
    runs of correlated snippets, so a frame is far from an independent trial)."""
    durations = [g.duration_s for v in map(as_footage, videos) for g in _segments(v, rules)]
    return float(max(MIN_UNIT_S, rules.min_duration_s, np.mean(durations) if durations else 0.0))


def effective_units(videos, unit_s: float) -> float:
    """How many independent units ``videos`` hold: each video's duration (its real clock when known) over
    ``unit_s``, at least 1 per video."""
    return float(sum(max(_seconds(v) / unit_s, 1.0) for v in map(as_footage, videos)))


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
    seconds = sum(_seconds(v) for v in map(as_footage, videos))
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
    """The arguments of :func:`calibrate`: ``0 <= target_far < 1``, ``0 <= hysteresis <= 1`` (scores are in
    ``[0, 1]``: a larger one leaves no threshold with ``off = on - hysteresis >= 0``) and non-negative minimum
    duration and merge gap, all finite; an :class:`AdplgError` naming the first bad one (cheap: call it before
    scoring the normal footage)."""
    check_number("calibrate", "target_far", target_far, low=0, high=1, high_open=True)
    check_number("calibrate", "hysteresis", hysteresis, low=0, high=1)
    check_number("calibrate", "min_duration_s", min_duration_s, low=0)
    check_number("calibrate", "merge_gap_s", merge_gap_s, low=0)


def calibrate(videos, target_far: float, hysteresis: float = 0.0, min_duration_s: float = 0.0,
              merge_gap_s: float = 0.0, bootstrap_rounds: int = 1000, seed: int = 0) -> AlertRules:
    """The lowest ``on_threshold`` (with ``off = on - hysteresis``) whose false-alarm rate on the normal ``videos``
    is at most ``target_far``. ``videos``: ``[(frame_scores [N], fps), ...]``, :class:`Footage` or timelines (see
    :func:`as_footage`); durations, gaps, the rate and the amount of footage are measured on each video's real
    clock when it has one.

    Only thresholds with ``hysteresis <= on <= SCORE_MAX`` are searched (the off threshold is never negative): the
    normal videos' scores at or above the hysteresis, and the lowest value above every score (no alerts at all).

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
    footage = [as_footage(v) for v in videos]
    if not footage:
        raise AdplgError("calibrate: no normal videos given")
    scores = np.concatenate([np.asarray(v.frame_scores, dtype=np.float64).reshape(-1) for v in footage])
    rules = lowest_on_threshold(scores, lambda r: false_alarm_rate(footage, r), target_far,
                                AlertRules(min_duration_s=min_duration_s, merge_gap_s=merge_gap_s), hysteresis)
    achieved = false_alarm_rate(footage, rules)
    unit_s = interval_unit_s(footage, rules)
    units = effective_units(footage, unit_s)
    low, high = _far_prediction_interval(footage, rules, bootstrap_rounds, seed, units)
    seconds = sum(_seconds(v) for v in footage)
    alerts = sum(len(_segments(v, rules)) for v in footage)
    rules.calibration = {"target_far": target_far, "achieved_far": achieved, "far_95_prediction_interval": [low, high],
                         "alerts_per_hour": alerts / max(seconds / 3600.0, 1e-12), "videos": len(footage),
                         "frames": int(sum(len(v.frame_scores) for v in footage)), "hours": seconds / 3600.0,
                         "hysteresis": hysteresis, "interval_unit_s": unit_s, "interval_units": units}
    note = footage_note(footage, unit_s, units)
    if note:
        rules.calibration["footage_note"] = note
    return rules
