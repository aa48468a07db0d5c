"""Attention-driven pseudo-label generation with history denoising (METHOD.md section 2.5).

Each history key (a video for UCF, a crop for XD/SHT) keeps the ``history`` most recent min-max normalised
self-attention vectors. Until a key has a full history its label is the current attention itself (soft, nothing
masked); from the (history+1)-th visit on, the label is ``minmax(mean) >= mean_threshold`` and snippets with
``minmax(var) > var_threshold`` are dropped from the snippet loss.

The history is a ring buffer tensor ``[K, history, T]`` on the training device: the official list append/pop keeps
the same set of entries, and mean/variance do not depend on their order. Samples of one batch that share a key are
processed in visiting order (a later crop sees the earlier crop's entry), exactly like the official per-sample loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def minmax(x: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """``(x - min) / (max - min + eps)`` along ``dim``."""
    low = x.amin(dim=dim, keepdim=True)
    high = x.amax(dim=dim, keepdim=True)
    return (x - low) / (high - low + eps)


@dataclass(kw_only=True)
class PseudoLabels:
    """The pseudo-labels of a batch of ``b`` abnormal videos of ``T`` snippets: targets, kept snippets, hard or not."""

    targets: Tensor  # [b, T] in [0, 1]: soft attention (history not full) or hard 0/1
    keep: Tensor  # [b, T] bool: False where the history variance marks the snippet as uncertain
    hard: Tensor  # [b] bool: whether the sample got hard labels


class PseudoLabelGenerator:
    """State and update rule of the pseudo-label history.

    Args:
        num_keys: number of distinct history keys (key ids are ``0..num_keys-1``).
        num_segments: T, the training length.
        history: N, entries kept per key (``pl_his_num``).
        mean_threshold: ``thre_pesudo_a``.
        var_threshold: ``thre_var_a``.
        label_smoothing: ``e``: hard labels ``y`` become ``y * (1 - e) + e / 2`` (0 = official).
    """

    def __init__(self, num_keys: int, num_segments: int, history: int, mean_threshold: float, var_threshold: float,
                 device: torch.device | str = "cpu", label_smoothing: float = 0.0):
        if history < 2:
            raise ValueError(f"history must be >= 2 (the variance is unbiased), got {history}")
        self.history = history
        self.mean_threshold = mean_threshold
        self.var_threshold = var_threshold
        self.label_smoothing = label_smoothing
        self.buffer = torch.zeros(num_keys, history, num_segments, device=device)
        self.visits = torch.zeros(num_keys, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, key_ids: Tensor, attention_norm: Tensor) -> PseudoLabels:
        """Add this step's attention to each key's history and return the labels.

        Args:
            key_ids: [b] long, the history key of each abnormal sample, in batch order (best on the CPU: the
                visiting order is worked out there, so the device never waits for the host).
            attention_norm: [b, T] min-max normalised self attention (``a_att_norm``), detached.
        """
        attention_norm = attention_norm.detach().to(self.buffer.dtype)
        device = attention_norm.device
        keys_cpu = key_ids.cpu()
        key_ids = key_ids.to(device)
        targets = attention_norm.clone()
        keep = torch.ones_like(attention_norm, dtype=torch.bool)
        hard = torch.zeros(len(keys_cpu), dtype=torch.bool, device=device)
        # occurrence rank of each sample among earlier samples with the same key: each round has unique keys
        rank = torch.tril(keys_cpu[:, None] == keys_cpu[None, :], diagonal=-1).sum(dim=1)
        for r in range(int(rank.max()) + 1 if len(keys_cpu) else 0):
            rows = torch.nonzero(rank == r).flatten().to(device)
            keys = key_ids[rows]
            full = self.visits[keys] >= self.history  # [n]: hard labels from the (history+1)-th visit
            self.buffer[keys, self.visits[keys] % self.history] = attention_norm[rows]
            self.visits[keys] += 1
            hist = self.buffer[keys]  # [n, N, T]
            hard_targets = (minmax(hist.mean(dim=1)) >= self.mean_threshold).to(targets.dtype)
            if self.label_smoothing:
                hard_targets = hard_targets * (1 - self.label_smoothing) + self.label_smoothing / 2
            certain = minmax(hist.var(dim=1, unbiased=True)) <= self.var_threshold
            targets[rows] = torch.where(full[:, None], hard_targets, attention_norm[rows])
            keep[rows] = certain | ~full[:, None]
            hard[rows] = full
        return PseudoLabels(targets=targets, keep=keep, hard=hard)

    def state_dict(self) -> dict[str, Tensor]:
        """The attention history (``buffer``) and visit counts (``visits``), as CPU copies for a checkpoint."""
        return {"buffer": self.buffer.detach().cpu().clone(), "visits": self.visits.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the history saved by :meth:`state_dict`; a history of another shape is a ValueError."""
        if state["buffer"].shape != self.buffer.shape:
            raise ValueError(f"pseudo-label history shape {tuple(state['buffer'].shape)} != expected "
                             f"{tuple(self.buffer.shape)} (different data or settings than the checkpoint)")
        self.buffer.copy_(state["buffer"])
        self.visits.copy_(state["visits"])
