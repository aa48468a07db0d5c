"""Scoring a test set with the snippet branch: crops of a video in one batch, averaged, expanded to frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adplg.data.datasets import TestSet
from adplg.errors import AdplgError
from adplg.evaluation.metrics import frame_metrics, per_class_ap, require_two_classes
from adplg.precision import autocast


def length_batches(lengths: list[int], crops: list[int], batch_snippets: int) -> list[list[int]]:
    """Group video indices of equal length into batches of at most ``batch_snippets`` crop-snippets (at least one
    video each). Equal lengths need no padding, so batching changes nothing in the result."""
    by_length: dict[int, list[int]] = {}
    for v, T in enumerate(lengths):
        by_length.setdefault(T, []).append(v)
    batches = []
    for T, videos in sorted(by_length.items()):
        batch: list[int] = []
        for v in videos:
            if batch and (sum(crops[u] for u in batch) + crops[v]) * T > batch_snippets:
                batches.append(batch)
                batch = []
            batch.append(v)
        batches.append(batch)
    return batches


def forward_in_chunks(net_s: nn.Module, x: torch.Tensor, batch_snippets: int) -> torch.Tensor:
    """``net_s`` over ``x [N, T, D]`` in row chunks of at most ``batch_snippets`` snippets (at least one row), so a
    long video's crops never exceed the memory bound. Returns float32 scores ``[N, T]``."""
    rows = max(1, batch_snippets // max(1, x.shape[1]))
    return torch.cat([net_s(chunk).float() for chunk in x.split(rows)])


@torch.no_grad()
def predict_snippet_scores(net_s: nn.Module, test: TestSet, device: torch.device | str = "cpu",
                           progress: bool = False, precision: str = "fp32",
                           batch_snippets: int = 65536) -> list[np.ndarray]:
    """Per video, the crop-averaged snippet scores [T_v] (net_s in eval mode, full length, no resampling).

    All crops of a video, and videos of equal length, go through one forward of at most ``batch_snippets``
    crop-snippets (a long video's crops are split when they exceed it); scores stay on the device until the end."""
    from tqdm import tqdm

    was_training = net_s.training
    net_s.eval()
    lengths = [int(test.store.lengths[idx[0]]) for idx in test.crop_index]
    crops = [len(idx) for idx in test.crop_index]
    batches = length_batches(lengths, crops, batch_snippets)
    on_device: dict[int, torch.Tensor] = {}
    with autocast(device, precision):
        for batch in tqdm(batches, desc="scoring", disable=not progress, leave=False):
            x = torch.from_numpy(np.concatenate([test.crops(v) for v in batch])).to(device)  # [sum C, T, D]
            scores = forward_in_chunks(net_s, x, batch_snippets)  # [sum C, T]
            for v, part in zip(batch, scores.split([crops[v] for v in batch])):
                on_device[v] = part.mean(dim=0)  # [T]
    net_s.train(was_training)
    return [on_device[v].cpu().numpy() for v in range(len(lengths))]


def smooth_scores(scores: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of snippet scores [T] over ``window`` snippets (edges use the available ones)."""
    if window <= 1 or len(scores) < 2:
        return scores
    kernel = np.ones(window)
    total = np.convolve(scores, kernel, mode="same")
    count = np.convolve(np.ones_like(scores), kernel, mode="same")
    return total / count


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
             progress: bool = False, precision: str = "fp32", batch_snippets: int = 65536,
             smooth_window: int = 0) -> tuple[dict[str, float], list[np.ndarray]]:
    """Frame metrics (auc, ap, pr_auc, auc_abnormal, far; per-class PR-AUC for XD) and per-video snippet scores.

    A GT with a single class is refused (``AdplgError``) before anything is scored."""
    require_two_classes(test.gt.labels, "test set ground truth")
    snippet_scores = predict_snippet_scores(net_s, test, device, progress=progress, precision=precision,
                                            batch_snippets=batch_snippets)
    snippet_scores = [smooth_scores(s, smooth_window) for s in snippet_scores]
    return score_metrics(test, snippet_scores, far_threshold), snippet_scores


def score_metrics(test: TestSet, snippet_scores: list[np.ndarray], far_threshold: float = 0.5) -> dict[str, float]:
    """Frame metrics of per-video snippet scores [T_v] from any scorer (our model or a baseline).

    Raises ``AdplgError`` when the test GT has no abnormal (or no normal) frame: frame AUC/AP would be NaN.
    ``build_test_set`` already refuses such a GT; this also covers test sets built otherwise (R1, the API)."""
    frames = frame_scores(test, snippet_scores)
    metrics = frame_metrics(test.gt.labels, frames, offsets=test.gt.offsets, video_labels=test.video_labels,
                            far_threshold=far_threshold, single_class="raise")
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
    np.savez_compressed(buffer, **{v.name: s for v, s in zip(test.videos, snippet_scores)})
    atomic_write_bytes(out_dir / "scores.npz", buffer.getvalue())
    return out_dir / "results.json"
