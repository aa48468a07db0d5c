"""Loss terms of the two ADPLG-VAD branches (METHOD §2.4)."""

from adplg.losses.branch_losses import (
    VideoLossTerms,
    cosine_dissimilarity_loss,
    smooth_loss,
    snippet_loss,
    sparsity_loss,
    topk_mil_loss,
    triplet_loss,
    video_bce_loss,
    video_branch_losses,
)

__all__ = [
    "VideoLossTerms",
    "cosine_dissimilarity_loss",
    "smooth_loss",
    "snippet_loss",
    "sparsity_loss",
    "topk_mil_loss",
    "triplet_loss",
    "video_bce_loss",
    "video_branch_losses",
]
