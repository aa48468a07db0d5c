"""Frame-level WSVAD metrics (sklearn based).

Conventions (METHOD.md sections 5 and 9):

* ``auc``: frame ROC AUC over all concatenated test frames (UCF-Crime / ShanghaiTech main metric).
* ``pr_auc``: ``auc(recall, precision)``, trapezoid on the ``precision_recall_curve``; this is what the official
  ADPLG / XDVioDet / UR-DMU code calls "AP" and the XD-Violence main metric. Use it for parity.
* ``ap``: sklearn ``average_precision_score`` (step-wise sum, VadCLIP convention). Usually a little lower.
* ``auc_abnormal``: AUC restricted to the frames of abnormal test videos (AUC_A / AnoAUC).
* ``far``: false-alarm rate, the fraction of the frames of normal test videos with score >= threshold (0.5).

A GT without abnormal (or without normal) frames has no frame AUC/AP. ``frame_metrics(..., single_class="raise")``
(what ``adplg train`` / ``adplg test`` use, through ``evaluate.score_metrics``) refuses it with an ``AdplgError``;
the default ``"nan"`` returns NaN with a ``RuntimeWarning``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from adplg.errors import AdplgError


def _as_1d(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2 and 1 in arr.shape:  # [F, 1] or [1, F]
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise AdplgError(f"{name} must be a 1-D array of frames, got shape {arr.shape}")
    return arr


def _check_gt_scores(gt, scores) -> tuple[np.ndarray, np.ndarray]:
    gt = _as_1d("gt", gt)
    scores = _as_1d("scores", scores)
    if len(gt) != len(scores):
        raise AdplgError(
            f"frame count mismatch: gt has {len(gt)} frames but scores has {len(scores)} frames "
            "(check snippet-to-frame expansion x16, crop averaging and list order)"
        )
    if len(gt) == 0:
        raise AdplgError("gt and scores are empty")
    if not np.isin(gt, (0, 1)).all():
        raise AdplgError("gt must hold 0/1 frame labels")
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise AdplgError(f"scores contain {int((~np.isfinite(scores)).sum())} NaN/inf values")
    return gt.astype(np.int64), scores


def _check_offsets(offsets, num_frames: int, num_videos_expected: int | None = None) -> np.ndarray:
    off = np.asarray(offsets).reshape(-1).astype(np.int64)
    if len(off) < 2:
        raise AdplgError(f"offsets must have V+1 >= 2 entries, got {len(off)}")
    if off[0] != 0 or off[-1] != num_frames or (np.diff(off) < 0).any():
        raise AdplgError(
            f"offsets must start at 0, be non-decreasing and end at the number of frames ({num_frames}); "
            f"got first={off[0]}, last={off[-1]}"
        )
    if num_videos_expected is not None and len(off) - 1 != num_videos_expected:
        raise AdplgError(f"offsets describe {len(off) - 1} videos but {num_videos_expected} video labels/classes given")
    return off


SINGLE_CLASS_MODES = ("nan", "raise")


def require_two_classes(gt, what: str = "frame ground truth") -> None:
    """Raise ``AdplgError`` when the 0/1 ``gt`` has no abnormal or no normal frame (AUC/AP would be undefined)."""
    gt = np.asarray(gt)
    abnormal = int(np.count_nonzero(gt))
    if gt.size and 0 < abnormal < gt.size:
        return
    if gt.size == 0:
        got = "no frames"
    else:
        got = f"all {gt.size} frames {'normal (0)' if not abnormal else 'abnormal (1)'}"
    raise AdplgError(f"{what}: expected both abnormal (1) and normal (0) frames, got {got}: frame AUC/AP are "
                     f"undefined (check the test annotations or GT file, e.g. with `adplg doctor`)")


def _two_classes(gt: np.ndarray, what: str) -> bool:
    if gt.size == 0 or gt.min() == gt.max():
        kind = "no frames" if gt.size == 0 else f"only class {int(gt[0])}"
        warnings.warn(f"{what}: ground truth has {kind}; metric is undefined (NaN)", RuntimeWarning, stacklevel=3)
        return False
    return True


def _roc_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(gt, scores))


def _pr_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(gt, scores)
    return float(auc(recall, precision))


def frame_metrics(
    gt: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray | None = None,
    video_labels: np.ndarray | None = None,
    far_threshold: float = 0.5,
    single_class: str = "nan",
) -> dict[str, float]:
    """Frame-level metrics of concatenated per-frame scores against the concatenated 0/1 frame GT.

    Args:
        gt: [F] frame labels (0/1), concatenated in test-list order.
        scores: [F] frame scores (snippet scores repeated x16), same order.
        offsets: [V+1] frame offsets of the videos in the concatenation (video v = frames
            ``offsets[v]:offsets[v+1]``); needed, together with ``video_labels``, for ``auc_abnormal`` and ``far``.
        video_labels: [V] video labels (1 abnormal, 0 normal).
        far_threshold: score threshold of the false-alarm rate.
        single_class: a GT with a single class (no abnormal or no normal frame) makes ``auc``/``ap``/``pr_auc``
            undefined: ``"nan"`` returns NaN with a ``RuntimeWarning``, ``"raise"`` raises ``AdplgError``.

    Returns a dict with ``auc`` (ROC AUC), ``ap`` (``average_precision_score``), ``pr_auc`` (trapezoid
    ``auc(recall, precision)``, the official code's "AP"), ``auc_abnormal`` (AUC over the frames of abnormal videos
    only), ``far`` (fraction of frames of normal videos with score >= ``far_threshold``) and ``num_frames``.
    ``auc_abnormal`` and ``far`` are NaN when ``offsets``/``video_labels`` are not given. A metric whose GT has a
    single class (or no frames) is NaN and a ``RuntimeWarning`` is issued (``single_class="nan"``); with
    ``single_class="raise"`` the whole GT must hold both classes (``auc_abnormal`` may still be NaN, with a warning,
    when every frame of the abnormal videos is abnormal).

    Raises:
        AdplgError: gt and scores differ in length (the message gives both), bad offsets, non-0/1 GT, NaN scores,
            a single-class GT with ``single_class="raise"``.
    """
    if single_class not in SINGLE_CLASS_MODES:
        raise AdplgError(f"frame_metrics: single_class: expected one of {SINGLE_CLASS_MODES}, got {single_class!r}")
    gt, scores = _check_gt_scores(gt, scores)
    if single_class == "raise":
        require_two_classes(gt)
    out: dict[str, float] = {"num_frames": float(len(gt))}
    if _two_classes(gt, "auc/ap/pr_auc"):
        from sklearn.metrics import average_precision_score

        out["auc"] = _roc_auc(gt, scores)
        out["ap"] = float(average_precision_score(gt, scores))
        out["pr_auc"] = _pr_auc(gt, scores)
    else:
        out["auc"] = out["ap"] = out["pr_auc"] = math.nan

    out["auc_abnormal"] = math.nan
    out["far"] = math.nan
    if (offsets is None) != (video_labels is None):
        raise AdplgError("offsets and video_labels must be given together (for auc_abnormal and far)")
    if offsets is not None:
        labels = np.asarray(video_labels).reshape(-1)
        off = _check_offsets(offsets, len(gt), len(labels))
        if not np.isin(labels, (0, 1)).all():
            raise AdplgError("video_labels must be 0 (normal) or 1 (abnormal)")
        frame_video_abnormal = np.repeat(labels.astype(bool), np.diff(off))
        gt_a = gt[frame_video_abnormal]
        if not gt_a.size:
            warnings.warn("auc_abnormal: no frames of abnormal videos; metric is undefined (NaN)", RuntimeWarning,
                          stacklevel=2)
        elif _two_classes(gt_a, "auc_abnormal"):
            out["auc_abnormal"] = _roc_auc(gt_a, scores[frame_video_abnormal])
        normal_scores = scores[~frame_video_abnormal]
        if normal_scores.size:
            out["far"] = float(np.mean(normal_scores >= far_threshold))
        else:
            warnings.warn("far: no frames of normal videos; metric is undefined (NaN)", RuntimeWarning, stacklevel=2)
    return out


def _video_class_set(entry, normal_class: str) -> set[str]:
    if isinstance(entry, str):
        parts = entry.split("-")
    elif isinstance(entry, Sequence):
        parts = list(entry)
    else:
        raise AdplgError(f"video class must be a string or a list of strings, got {entry!r}")
    return {p for p in parts if p and p != "0"} or {normal_class}


def per_class_ap(
    gt: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    video_classes: list,
    normal_class: str = "A",
) -> dict[str, float]:
    """Per-class AP (XD-Violence protocol): for each anomaly class c, the frames of the videos of class c plus the
    frames of all normal videos, scored with the **pr_auc convention** (``auc(recall, precision)``, trapezoid on the
    PR curve, as the official XDVioDet/ADPLG code; not ``average_precision_score``).

    ``video_classes[v]`` is the class of video v: a string such as ``"B1"`` or an XD multi-label string such as
    ``"B2-G-0"`` (split on ``-``, ``0`` ignored; the video counts for each of its classes), or a list of strings.
    Videos of ``normal_class`` are the negatives shared by every class. Returns ``{class: pr_auc}`` for every
    anomaly class present, in sorted order (NaN with a warning when a class subset has a single GT class).
    """
    gt, scores = _check_gt_scores(gt, scores)
    off = _check_offsets(offsets, len(gt), len(video_classes))
    sets = [_video_class_set(c, normal_class) for c in video_classes]
    is_normal = np.array([s == {normal_class} for s in sets])
    classes = sorted(set().union(*sets) - {normal_class})
    lengths = np.diff(off)
    out = {}
    for cls in classes:
        keep_video = is_normal | np.array([cls in s for s in sets])
        mask = np.repeat(keep_video, lengths)
        g = gt[mask]
        out[cls] = _pr_auc(g, scores[mask]) if _two_classes(g, f"per_class_ap[{cls}]") else math.nan
    return out
