"""Soft targets from a trained snippet branch (``train.teacher`` with ``loss.distill``): a second self-training round,
or a causal student learning from a bidirectional teacher. The teacher scores every training crop once, at the start
of the student's run; its own saved config builds it, so teacher and student may differ in size and causality."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from adplg.checkpoints.format import checkpoint_file
from adplg.checkpoints.load import load_snippet_branch
from adplg.errors import AdplgError

log = logging.getLogger("adplg")


def check_teacher(teacher: str | Path | None) -> None:
    """Refuse a ``train.teacher`` with no checkpoint, before a run directory is made or data is read; None passes."""
    if teacher is not None and not checkpoint_file(teacher).is_file():
        raise AdplgError(f"expected a trained run directory or checkpoint, found no checkpoint at {teacher} (looked "
                         f"for {checkpoint_file(teacher)})", parameter="train.teacher")


@torch.no_grad()
def teacher_scores(teacher: str | Path, features: Tensor, chunk: int = 256) -> Tensor:
    """The snippet scores ``[N, T]`` (in ``[0, 1]``, float32, on ``features``' device) that the snippet branch saved
    in ``teacher`` (a run directory or checkpoint; an ensemble scores as its members' mean) gives the training crops
    ``features [N, T, D]``. A teacher trained on features of another size is an :class:`AdplgError` naming both."""
    cfg, net = load_snippet_branch(teacher, announce_data=False)
    if cfg.data.feature_dim != features.shape[-1]:
        raise AdplgError(f"{teacher}: the teacher expects {cfg.data.feature_dim}-d features, the student trains on "
                         f"{features.shape[-1]}-d ones", parameter="train.teacher")
    net = net.to(features.device).eval()
    scores = torch.cat([net(features[i:i + chunk]).float() for i in range(0, len(features), chunk)])
    log.info("teacher %s: scored %d training crops (mean score %.3f)", teacher, len(features), scores.mean().item())
    return scores
