"""Loss terms of the two branches (METHOD §2.4). Pure functions; no training state.

Branch 1 (``net_v``), with ``Bh`` videos per half and ``T`` snippets::

    L_v = w_bce * BCE(video scores, video labels)                # mean over all B videos
        + w_tri * TripletMargin(fN, fAN, fA; margin 1, p 2)     # compactness-separation
        + w_cos * sum_i cos_T(sA_i, sAN_i) / Bh                 # distributional dissimilarity
        + w_sm  * smooth(sA)                                    # RTFM smoothness
        + w_sp  * sparsity(sA)                                  # RTFM sparsity

Branch 2 (``net_s``): masked per-snippet BCE (:func:`snippet_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from adplg.errors import AdplgError
from adplg.models.video_branch import VideoBranchOutput

VIDEO_LOSS_TERMS = ("video_bce", "triplet", "cos", "smooth", "sparsity")
LOSS_AXES = ("batch", "time")
_WEIGHT_ALIASES = {"video": "video_bce"}  # accepted alternative weight names


@dataclass(kw_only=True)
class VideoLossTerms:
    """Scalar loss terms of branch 1 (unweighted) and their weighted sum ``total``."""

    video_bce: Tensor
    triplet: Tensor
    cos: Tensor
    smooth: Tensor
    sparsity: Tensor
    total: Tensor


def _axis(name: str, axis: str) -> int:
    if axis not in LOSS_AXES:
        raise AdplgError(f"{name} must be one of {LOSS_AXES}, got {axis!r}")
    return 0 if axis == "batch" else 1


def video_bce_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE of sigmoid video scores ``[B]`` against 0/1 labels ``[B]``."""
    return F.binary_cross_entropy(scores, labels.to(scores.dtype).reshape(scores.shape))


def triplet_loss(n_feats: Tensor, an_feats: Tensor, a_feats: Tensor, margin: float = 1.0) -> Tensor:
    """Compactness-separation: mean over i of ``max(0, |fN_i - fAN_i|_2 - |fN_i - fA_i|_2 + margin)`` with
    PyTorch's pairwise-distance eps 1e-6 (anchor fN, positive fAN, negative fA; ``[Bh, d]`` each)."""
    return F.triplet_margin_loss(n_feats, an_feats, a_feats, margin=margin, p=2.0, eps=1e-6)


def cosine_dissimilarity_loss(a_att: Tensor, an_att: Tensor) -> Tensor:
    """``sum_i cos(sA_i, sAN_i) / Bh`` with the cosine over time (eps 1e-6); ``[Bh, T]`` each."""
    return F.cosine_similarity(a_att, an_att, dim=1, eps=1e-6).sum() / a_att.shape[0]


def smooth_loss(att: Tensor, axis: str = "batch") -> Tensor:
    """RTFM smoothness ``sum((shift(att) - att)^2)`` where ``shift`` drops the first entry and repeats the last.

    ``att [Bh, T]``. ``axis="batch"`` shifts along dim 0 (across videos; the official behaviour), ``"time"``
    along dim 1 (the evident intent).
    """
    dim = _axis("smooth_axis", axis)
    n = att.shape[dim]
    shifted = torch.cat((att.narrow(dim, 1, n - 1), att.narrow(dim, n - 1, 1)), dim=dim)
    return ((shifted - att) ** 2).sum()


def sparsity_loss(att: Tensor, axis: str = "batch") -> Tensor:
    """RTFM sparsity: the mean of L2 norms of ``att [Bh, T]`` taken along ``axis``.

    ``"batch"``: ``mean_t |att[:, t]|_2`` (the official behaviour); ``"time"``: ``mean_i |att[i, :]|_2``.
    """
    return torch.linalg.vector_norm(att, ord=2, dim=_axis("sparsity_axis", axis)).mean()


def video_branch_losses(out: VideoBranchOutput, video_labels: Tensor, weights: dict | None = None,
                        smooth_axis: str = "batch", sparsity_axis: str = "batch") -> VideoLossTerms:
    """All branch-1 loss terms for one forward pass.

    Args:
        out: :class:`VideoBranchOutput` of a batch ``[normal half, abnormal half]``.
        video_labels: ``[B]`` 0/1 labels in the same order as ``out.scores``.
        weights: optional per-term weights (keys from ``video_bce, triplet, cos, smooth, sparsity``; ``video`` is
            accepted for ``video_bce``; missing -> 1).
        smooth_axis: ``"batch"`` (faithful) or ``"time"`` (fix option), see :func:`smooth_loss`.
        sparsity_axis: ``"batch"`` (faithful) or ``"time"`` (fix option), see :func:`sparsity_loss`.
    """
    weights = {_WEIGHT_ALIASES.get(k, k): v for k, v in (weights or {}).items()}
    unknown = sorted(set(weights) - set(VIDEO_LOSS_TERMS))
    if unknown:
        raise AdplgError(f"unknown video loss weight(s) {unknown}; expected keys from {VIDEO_LOSS_TERMS}")
    terms = {
        "video_bce": video_bce_loss(out.scores, video_labels),
        "triplet": triplet_loss(out.n_feats, out.an_feats, out.a_feats),
        "cos": cosine_dissimilarity_loss(out.a_att, out.an_att),
        "smooth": smooth_loss(out.a_att, smooth_axis),
        "sparsity": sparsity_loss(out.a_att, sparsity_axis),
    }
    total = sum(float(weights.get(name, 1.0)) * value for name, value in terms.items())
    assert isinstance(total, Tensor)  # a sum of five tensors (never the empty sum's 0)
    return VideoLossTerms(total=total, **terms)


def snippet_loss(scores: Tensor, targets: Tensor, keep: Tensor, faithful_nan_trick: bool = True) -> Tensor:
    """Masked per-snippet BCE of branch 2.

    Args:
        scores: ``[B, T]`` sigmoid snippet scores.
        targets: ``[B, T]`` targets in ``[0, 1]`` (0 for normal videos; pseudo-labels for abnormal ones).
        keep: ``[B, T]`` bool; ``False`` marks uncertain snippets that are ignored.
        faithful_nan_trick: ``True`` reproduces the official "zero loss -> NaN -> nanmean": ignored elements get
            score and target 0 (per-element BCE exactly 0), then **every** element whose BCE is exactly 0 is
            excluded (including, e.g., a kept snippet scored exactly 0 with target 0) and the rest are averaged.
            ``False``: the plain mean of the per-element BCE over the kept elements.

    Returns:
        Scalar loss. When nothing is left to average it is ``0`` (still attached to ``scores``), where the
        official code would produce NaN.
    """
    if scores.shape != targets.shape or scores.shape != keep.shape:
        raise AdplgError(f"snippet_loss: scores {list(scores.shape)}, targets {list(targets.shape)} and keep "
                         f"{list(keep.shape)} must have the same shape")
    keep = keep.to(torch.bool)
    targets = targets.to(scores.dtype)
    if faithful_nan_trick:
        zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
        per_elem = F.binary_cross_entropy(torch.where(keep, scores, zero), torch.where(keep, targets, zero),
                                          reduction="none")
        selected = per_elem != 0
    else:
        per_elem = F.binary_cross_entropy(scores, targets, reduction="none")
        selected = keep
    if not bool(selected.any()):
        return scores.sum() * 0.0
    return per_elem[selected].mean()


def topk_mil_loss(scores: Tensor, video_labels: Tensor) -> Tensor:
    """Video BCE on the mean of each video's top ``ceil(T/16)`` snippet scores (top-k MIL).

    Args:
        scores: ``[B, T]`` sigmoid snippet scores.
        video_labels: ``[B]`` 0/1 video labels.
    """
    k = max(1, -(-scores.shape[1] // 16))
    video_scores = scores.topk(k, dim=1).values.mean(dim=1)
    return F.binary_cross_entropy(video_scores, video_labels.to(scores.dtype))
