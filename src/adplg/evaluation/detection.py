"""Time to detect: how soon the alerts flag an annotated anomaly, at thresholds that keep a false-alarm rate on the
normal test videos.

Definitions (:func:`time_to_detect`):

* Alerts are the frames inside an alert after the alert rules (:mod:`adplg.alert_rules`: hysteresis, merge gap,
  minimum duration), applied to each video's frame scores on its own, frame ``i`` at ``i / fps`` seconds.
* Threshold: for each target false-alarm rate (1% and 5%), the lowest ``on_threshold`` whose alerts cover at most
  that share of the frames of the *normal* test videos. The rules given are a template: only their level moves, with
  ``off = on - (template on - template off)`` (the hysteresis gap kept), and their merge gap and minimum duration kept
  (:func:`~adplg.alert_rules.lowest_on_threshold`: every distinct normal score is a candidate, the search is exact).
  The rate achieved is reported beside the target.
* Anomaly intervals: the runs of 1s in the frame GT of each *abnormal* video, ``[start, end)`` frames.
* An interval is detected when an alert covers one of its frames. Its detection frame is the first such frame, or,
  when the alert covering it is not yet certain there, the frame at which that alert is raised
  (:func:`alert_raise_frames`: with a minimum duration, a live alert starts only once it has lasted that long, as
  :class:`~adplg.inference.online_alerts.OnlineAlerts` raises it). An alert still on from before the interval's
  start (raised before it) detects it at its first frame, time 0. Alerts that end before an interval are false
  alarms, never early detections; an alert first raised after the interval's end, by a run that began inside it,
  still detects it (late).
* Time to detect (seconds) = ``(detection frame - start) / fps + latency_s``, with ``latency_s`` a live scorer's
  delay (0 offline; per video when it differs). Reported per target: the share of intervals detected, the median and
  the 90th percentile over the detected intervals (NaN when none is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from adplg.alert_rules import AlertRules, alert_mask, check_number, hysteresis_mask, lowest_on_threshold, mask_runs
from adplg.errors import AdplgError

if TYPE_CHECKING:
    from adplg.config import Config
    from adplg.data.datasets import TestSet

TARGET_FARS = (0.01, 0.05)  # the false-alarm rates time to detect is reported at


def far_key(target_far: float) -> str:
    """The results key of a target rate: ``0.01`` -> ``"far_1%"``."""
    return f"far_{target_far * 100:g}%"


def anomaly_intervals(frame_gt: np.ndarray) -> np.ndarray:
    """``frame_gt [F]`` (0/1) -> ``[K, 2]`` ``[start, end)`` frames of its runs of 1s (the annotated anomalies)."""
    return mask_runs(np.asarray(frame_gt).reshape(-1) > 0)


def alert_raise_frames(frame_scores: np.ndarray, fps: float, rules: AlertRules) -> tuple[np.ndarray, np.ndarray]:
    """``frame_scores [N]`` -> ``(runs [K, 2], raised [K])``: the alerts after the rules (``[start, end)`` frames, as
    :func:`~adplg.alert_rules.alert_mask`) and the frame at which each is raised live: the first frame at or above
    the on/off hysteresis (not a merged gap) from which the alert has lasted ``min_duration_s`` (``start`` itself
    without a minimum duration); the frame of :class:`~adplg.inference.online_alerts.OnlineAlerts`' ``started``
    event fed one frame at a time."""
    scores = np.asarray(frame_scores, dtype=np.float64).reshape(-1)
    runs = mask_runs(alert_mask(scores, fps, rules))
    assert rules.off_threshold is not None  # AlertRules.__post_init__ sets it
    above = np.flatnonzero(hysteresis_mask(scores, rules.on_threshold, rules.off_threshold))
    # frames f of an alert starting at s are certain once f + 1 - s >= min_duration_s * fps (OnlineAlerts' test)
    settle = max(math.ceil(rules.min_duration_s * fps) - 1, 0)
    # a kept alert lasts at least that long and ends on a hysteresis frame, so the search stays within it
    raised = above[np.searchsorted(above, runs[:, 0] + settle)] if len(runs) else np.zeros(0, dtype=np.int64)
    return runs, raised


def detection_frames(frame_scores: np.ndarray, fps: float, rules: AlertRules, intervals: np.ndarray) -> np.ndarray:
    """``[K]`` the detection frame of each ``[start, end)`` interval of ``intervals [K, 2]`` (module docstring), -1
    for an interval no alert covers."""
    runs, raised = alert_raise_frames(frame_scores, fps, rules)
    out = np.full(len(intervals), -1, dtype=np.int64)
    for k, (start, end) in enumerate(np.asarray(intervals, dtype=np.int64).reshape(-1, 2)):
        # the first alert that ends after the interval's start; it covers the interval if it starts before its end
        j = int(np.searchsorted(runs[:, 1], start, side="right")) if len(runs) else 0
        if j < len(runs) and runs[j, 0] < end:
            out[k] = max(int(runs[j, 0]), int(start), int(raised[j]))
    return out


def _per_video(name: str, values, count: int) -> list[np.ndarray]:
    arrays = [np.asarray(v).reshape(-1) for v in values]
    if len(arrays) != count:
        raise AdplgError(f"time to detect: expected {name} for {count} videos, got {len(arrays)}", parameter=name)
    return arrays


def _check_inputs(frame_scores, frame_gt, video_labels, latency_s) -> tuple[list, list, np.ndarray, np.ndarray]:
    labels = np.asarray(video_labels).reshape(-1)
    if not np.isin(labels, (0, 1)).all():
        raise AdplgError(f"time to detect: expected video_labels 0 (normal) or 1 (abnormal), got "
                         f"{sorted(set(labels.tolist()) - {0, 1})[:5]}", parameter="video_labels")
    scores = _per_video("frame_scores", frame_scores, len(labels))
    gt = _per_video("frame_gt", frame_gt, len(labels))
    for v, (s, g) in enumerate(zip(scores, gt)):
        if len(s) != len(g):
            raise AdplgError(f"time to detect: video {v} has {len(s)} frame scores but {len(g)} GT frames",
                             parameter="frame_scores")
        if not np.isfinite(s.astype(np.float64)).all():
            raise AdplgError(f"time to detect: video {v}: expected finite frame scores, got NaN/inf",
                             parameter="frame_scores")
        if not np.isin(g, (0, 1)).all():
            raise AdplgError(f"time to detect: video {v}: expected a 0/1 frame GT", parameter="frame_gt")
    latency = np.broadcast_to(np.asarray(latency_s, dtype=np.float64), labels.shape) if np.ndim(latency_s) == 0 \
        else np.asarray(latency_s, dtype=np.float64).reshape(-1)
    if latency.shape != labels.shape or not (np.isfinite(latency).all() and (latency >= 0).all()):
        raise AdplgError(f"time to detect: expected latency_s >= 0 seconds, one number or one per video "
                         f"({len(labels)}), got {np.ndim(latency_s)}-d with shape {list(np.shape(latency_s))}",
                         parameter="latency_s")
    return scores, gt, labels, latency


def _summary(delays: list[float], intervals: int) -> dict[str, float]:
    found = np.asarray(delays, dtype=np.float64)
    return {"intervals": intervals, "detected": int(found.size),
            "detected_share": found.size / intervals if intervals else math.nan,
            "median_s": float(np.median(found)) if found.size else math.nan,
            "p90_s": float(np.percentile(found, 90)) if found.size else math.nan}


def time_to_detect(frame_scores: Sequence[np.ndarray], frame_gt: Sequence[np.ndarray], video_labels, fps: float,
                   rules: AlertRules | None = None, target_fars: Sequence[float] = TARGET_FARS,
                   latency_s: float | Sequence[float] = 0.0) -> dict[str, dict]:
    """Time to detect the annotated anomalies at each target false-alarm rate (module docstring).

    Args:
        frame_scores: per test video, its frame scores ``[F_v]`` in ``[0, 1]``.
        frame_gt: per video, its 0/1 frame GT ``[F_v]``.
        video_labels: ``[V]`` 1 abnormal (its GT runs are the intervals), 0 normal (sets the thresholds).
        fps: frames per second of the frame GT.
        rules: the alert rules template (default: a plain threshold): its ``on - off`` gap, merge gap and minimum
            duration are kept, its level is searched.
        target_fars: the false-alarm rates (shares of normal frames inside an alert), each in ``[0, 1)``.
        latency_s: seconds added to every time to detect (a live scorer's delay), one number or one per video.

    Returns ``{far_key(target): {...}}`` (``"far_1%"``, ``"far_5%"``), each with ``target_far``, ``achieved_far``,
    ``on_threshold``, ``off_threshold``, ``min_duration_s``, ``merge_gap_s``, ``fps``, ``latency_s`` (the mean over
    the abnormal videos), ``intervals``, ``detected``, ``detected_share``, ``median_s`` and ``p90_s``. Without normal
    videos no threshold exists: thresholds, rates and times are NaN, nothing is detected and ``note`` says why. A bad
    input is an :class:`AdplgError` naming its parameter."""
    rules = AlertRules() if rules is None else rules
    fps = check_number("time to detect", "fps", fps, low=0, low_open=True)
    targets = [check_number("time to detect", "target_far", t, low=0, high=1, high_open=True) for t in target_fars]
    scores, gt, labels, latency = _check_inputs(frame_scores, frame_gt, video_labels, latency_s)
    assert rules.off_threshold is not None  # AlertRules.__post_init__ sets it
    hysteresis = rules.on_threshold - rules.off_threshold
    normal = [s for s, label in zip(scores, labels) if label == 0]
    abnormal = [v for v, label in enumerate(labels) if label == 1]
    intervals = {v: anomaly_intervals(gt[v]) for v in abnormal}
    count = sum(len(i) for i in intervals.values())
    normal_frames = sum(len(s) for s in normal)
    common = {"min_duration_s": rules.min_duration_s, "merge_gap_s": rules.merge_gap_s, "fps": fps,
              "latency_s": float(np.mean(latency[abnormal])) if abnormal else 0.0}

    def rate_of(candidate: AlertRules) -> float:
        return sum(int(alert_mask(s, fps, candidate).sum()) for s in normal) / normal_frames

    out = {}
    for target in targets:
        if not normal_frames:
            out[far_key(target)] = {"target_far": target, "achieved_far": math.nan, "on_threshold": math.nan,
                                    "off_threshold": math.nan, **common, **_summary([], count),
                                    "detected_share": math.nan,
                                    "note": "no normal test video: no threshold for a false-alarm rate"}
            continue
        found = lowest_on_threshold(np.concatenate(normal), rate_of, target, rules, hysteresis,
                                    where="time to detect")
        delays = []
        for v in abnormal:
            frames = detection_frames(scores[v], fps, found, intervals[v])
            hit = frames >= 0
            delays.extend(((frames[hit] - intervals[v][hit, 0]) / fps + latency[v]).tolist())
        out[far_key(target)] = {"target_far": target, "achieved_far": rate_of(found),
                                "on_threshold": found.on_threshold, "off_threshold": found.off_threshold, **common,
                                **_summary(delays, count)}
    return out


def describe(result: dict[str, dict]) -> str:
    """One line of :func:`time_to_detect`'s result, e.g. ``FAR 1%: 12/20 intervals detected (60%), median 1.2 s,
    p90 4.5 s (threshold 0.83, achieved FAR 0.98%); FAR 5%: ...``."""
    parts = []
    for entry in result.values():
        if "note" in entry:
            parts.append(f"FAR {entry['target_far']:.0%}: {entry['note']}")
            continue
        share = entry["detected_share"]
        timing = (f", median {entry['median_s']:.2f} s, p90 {entry['p90_s']:.2f} s" if entry["detected"] else "")
        parts.append(f"FAR {entry['target_far']:.0%}: {entry['detected']}/{entry['intervals']} intervals detected"
                     f"{'' if math.isnan(share) else f' ({share:.0%})'}{timing} (threshold "
                     f"{entry['on_threshold']:.4f}, achieved FAR {entry['achieved_far']:.2%})")
    return "; ".join(parts)


def detection_on_test_set(test: TestSet, snippet_scores: list[np.ndarray], cfg: Config,
                          latency_s: float | Sequence[float] = 0.0,
                          target_fars: Sequence[float] = TARGET_FARS) -> dict[str, dict]:
    """:func:`time_to_detect` of per-video snippet scores ``[T_v]`` on a test set (a
    :class:`~adplg.data.datasets.TestSet`): frame scores expanded by its layout as frame metrics do, frame rate
    ``cfg.data.gt_fps`` and the alert rules of ``cfg.eval`` (``alert_hysteresis``, ``alert_min_duration_s``,
    ``alert_merge_gap_s``)."""
    from adplg.evaluation.evaluate import frame_scores

    e = cfg.eval
    frames = frame_scores(test, snippet_scores)
    offsets = test.gt.offsets
    per_video = [(frames[a:b], test.gt.labels[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    # only on - off matters: the level is searched (an off of 0 keeps the gap exact in floating point)
    rules = AlertRules(on_threshold=e.alert_hysteresis, off_threshold=0.0, min_duration_s=e.alert_min_duration_s,
                       merge_gap_s=e.alert_merge_gap_s)
    return time_to_detect([s for s, _ in per_video], [g for _, g in per_video], test.video_labels, cfg.data.gt_fps,
                          rules, target_fars, latency_s)

