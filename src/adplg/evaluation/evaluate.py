"""Scoring a test set with the snippet branch: crops of a video in one batch, averaged, expanded to frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adplg.data.datasets import TestSet
from adplg.evaluation.metrics import frame_metrics, per_class_ap
from adplg.errors import AdplgError


@torch.no_grad()
def predict_snippet_scores(net_s: nn.Module, test: TestSet, device: torch.device | str = "cpu",
                           progress: bool = False) -> list[np.ndarray]:
    """Per video, the crop-averaged snippet scores [T_v] (net_s in eval mode, full length, no resampling)."""
    from tqdm import tqdm

    was_training = net_s.training
    net_s.eval()
    scores = []
    for v in tqdm(range(len(test.videos)), desc="scoring", disable=not progress, leave=False):
        crops = torch.from_numpy(test.crops(v)).to(device)  # [C, T, D]
        scores.append(net_s(crops).mean(dim=0).float().cpu().numpy())  # [T]
    net_s.train(was_training)
    return scores


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
             progress: bool = False) -> tuple[dict[str, float], list[np.ndarray]]:
    """Frame metrics (auc, ap, pr_auc, auc_abnormal, far; per-class PR-AUC for XD) and per-video snippet scores."""
    snippet_scores = predict_snippet_scores(net_s, test, device, progress=progress)
    frames = frame_scores(test, snippet_scores)
    metrics = frame_metrics(test.gt.labels, frames, offsets=test.gt.offsets, video_labels=test.video_labels,
                            far_threshold=far_threshold)
    if test.video_classes:
        metrics["per_class_pr_auc"] = per_class_ap(test.gt.labels, frames, test.gt.offsets, test.video_classes)
    return metrics, snippet_scores


def write_results(out_dir: Path, test: TestSet, metrics: dict, snippet_scores: list[np.ndarray],
                  extra: dict | None = None) -> Path:
    """``results.json`` (metrics + extra) and ``scores.npz`` (per-video snippet scores, key = video name)."""
    from adplg.training.checkpoint import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"metrics": metrics, **(extra or {})}
    atomic_write_text(out_dir / "results.json", json.dumps(payload, indent=2, sort_keys=True))
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{v.name: s for v, s in zip(test.videos, snippet_scores)})
    atomic_write_bytes(out_dir / "scores.npz", buffer.getvalue())
    return out_dir / "results.json"
