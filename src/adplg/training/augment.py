"""Augmentations of branch 2's view of a training batch (options, all off by default: the official code has none).

Each takes the batch features ``x [N, T, D]`` with branch 2's ``targets [N, T]`` and ``keep [N, T]`` and returns
the three transformed alike, so a pseudo-label stays on the snippet it was made for. Branch 1 and the pseudo-label
history never see them. They draw from torch's global generator, and only when enabled.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def random_time_flip(x: Tensor, targets: Tensor, keep: Tensor, prob: float) -> tuple[Tensor, Tensor, Tensor]:
    """Each sample reversed in time with probability ``prob``."""
    flip = torch.rand(x.shape[0], device=x.device) < prob
    return (torch.where(flip[:, None, None], x.flip(1), x), torch.where(flip[:, None], targets.flip(1), targets),
            torch.where(flip[:, None], keep.flip(1), keep))


def random_temporal_crop(x: Tensor, targets: Tensor, keep: Tensor, min_scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample, a random contiguous span of ``L >= ceil(min_scale * T)`` of the ``T`` steps, stretched back to
    ``T``: linear interpolation for ``x``, the nearest step for ``targets`` and ``keep``."""
    n, length = x.shape[:2]
    shortest = max(1, math.ceil(min_scale * length))
    spans = torch.randint(shortest, length + 1, (n,))
    starts = (torch.rand(n) * (length - spans + 1)).long()
    # output step t samples the span at start + (t + 0.5) * span / T - 0.5 (the align_corners=False convention)
    pos = starts[:, None] + (torch.arange(length)[None] + 0.5) * spans[:, None] / length - 0.5  # [N, T]
    pos = pos.clamp(starts[:, None].float(), (starts + spans - 1)[:, None].float()).to(x.device)
    low = pos.floor().long()
    high = (low + 1).clamp(max=length - 1)
    frac = (pos - low)[..., None].to(x.dtype)
    rows = torch.arange(n, device=x.device)[:, None]
    stretched = x[rows, low] * (1 - frac) + x[rows, high] * frac
    nearest = pos.round().long()
    return stretched, targets[rows, nearest], keep[rows, nearest]


def feature_noise(x: Tensor, scale: float, feature_std: Tensor) -> Tensor:
    """``x`` plus Gaussian noise of ``scale`` times the per-dimension standard deviation ``feature_std [D]``."""
    return x + scale * feature_std * torch.randn_like(x)
