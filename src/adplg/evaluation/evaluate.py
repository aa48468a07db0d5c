"""Scoring a test set with the snippet branch: crops of a video in one batch, averaged, expanded to frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adplg.data.datasets import TestSet
from adplg.errors import AdplgError
from adplg.evaluation.metrics import frame_metrics, per_class_ap, require_two_classes
from adplg.models.apply import DEFAULT_BATCH_SNIPPETS, batched_snippet_scores


def predict_snippet_scores(net_s: nn.Module, test: TestSet, device: torch.device | str = "cpu",
                           progress: bool = False, precision: str = "fp32",
                           batch_snippets: int = DEFAULT_BATCH_SNIPPETS, smooth_window: int = 0,
                           smooth_mode: str = "centred") -> list[np.ndarray]:
    """Per video, the crop-averaged snippet scores [T_v] (net_s in eval mode, no resampling), smoothed
    over ``smooth_window`` snippets (0 = off; ``smooth_mode`` centred or trailing).

    All crops of a video, and videos of equal length, go through one forward of at most ``batch_snippets``
    crop-snippets (:func:`~adplg.models.apply.batched_snippet_scores`: a long video's crops are split when they
    exceed it, a video longer than the model's ``max_len`` is scored in overlapping windows)."""
    lengths = [int(test.store.lengths[idx[0]]) for idx in test.crop_index]
    crops = [len(idx) for idx in test.crop_index]
    return batched_snippet_scores(net_s, test.crops, lengths, crops, batch_snippets=batch_snippets,
                                  smooth_window=smooth_window, device=device, precision=precision, progress=progress,
                                  smooth_mode=smooth_mode)


def frame_scores(test: TestSet, snippet_scores: list[np.ndarray]) -> np.ndarray:
    """Concatenated frame scores in GT order; each video's length must equal its GT slice."""
    out = []
    for v, scores in enumerate(snippet_scores):
        frames = test.video_frames[v] if test.video_frames is not None else None
        expanded = test.layout.expand(scores, frames)
        expected = int(test.gt.offsets[v + 1] - test.gt.offsets[v])
        if len(expanded) != expected:
            raise AdplgError(f"video {test.videos[v].name}: {len(expanded)} frame scores from {len(scores)} snippets, "
                             f"but its ground truth has {expected} frames")
        out.append(expanded)
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(net_s: nn.Module, test: TestSet, device: torch.device | str = "cpu", far_threshold: float = 0.5,
             progress: bool = False, precision: str = "fp32", batch_snippets: int = DEFAULT_BATCH_SNIPPETS,
             smooth_window: int = 0, smooth_mode: str = "centred") -> tuple[dict[str, float], list[np.ndarray]]:
    """Frame metrics (auc, ap, pr_auc, auc_abnormal, far; per-class PR-AUC for XD) and per-video snippet scores.

    A GT with a single class is refused (``AdplgError``) before anything is scored."""
    require_two_classes(test.gt.labels, "test set ground truth")
    snippet_scores = predict_snippet_scores(net_s, test, device, progress=progress, precision=precision,
                                            batch_snippets=batch_snippets, smooth_window=smooth_window,
                                            smooth_mode=smooth_mode)
    return score_metrics(test, snippet_scores, far_threshold), snippet_scores


def score_metrics(test: TestSet, snippet_scores: list[np.ndarray], far_threshold: float = 0.5) -> dict[str, Any]:
    """Frame metrics of per-video snippet scores [T_v] from any scorer (our model or a baseline): floats, and for XD
    ``per_class_pr_auc`` (a mapping class -> PR-AUC).

    Raises ``AdplgError`` when the test GT has no abnormal (or no normal) frame: frame AUC/AP would be NaN.
    ``build_test_set`` already refuses such a GT; this also covers test sets built otherwise (R1, the API)."""
    frames = frame_scores(test, snippet_scores)
    metrics: dict[str, Any] = frame_metrics(test.gt.labels, frames, offsets=test.gt.offsets,
                                            video_labels=test.video_labels, far_threshold=far_threshold,
                                            single_class="raise")
    if test.video_classes:
        metrics["per_class_pr_auc"] = per_class_ap(test.gt.labels, frames, test.gt.offsets, test.video_classes)
    return metrics


def write_results(out_dir: Path, test: TestSet, metrics: dict, snippet_scores: list[np.ndarray],
                  extra: dict | None = None) -> Path:
    """``results.json`` (metrics + extra) and ``scores.npz`` (per-video snippet scores, key = video name)."""
    from adplg.io import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"metrics": metrics, **(extra or {})}
    atomic_write_text(out_dir / "results.json", json.dumps(payload, indent=2, sort_keys=True))
    import io

    buffer = io.BytesIO()
    # allow_pickle (its default) named: a video key can never be taken for it
    np.savez_compressed(buffer, allow_pickle=True, **{v.name: s for v, s in zip(test.videos, snippet_scores)})
    atomic_write_bytes(out_dir / "scores.npz", buffer.getvalue())
    return out_dir / "results.json"
