"""The official sampling: two independent loaders (normal, abnormal), shuffled, ``drop_last``, each re-shuffled when
its epoch is exhausted (``(step - 1) % len(loader) == 0``). Only indices are drawn here; features stay on the device."""

from __future__ import annotations

import torch
from torch import Tensor


class EpochSampler:
    """Draws ``batch_size`` indices per step from a fresh random permutation each epoch (drop_last).

    Args:
        indices: [N] long, the pool to sample from (e.g. the positions of all normal crops).
        batch_size: samples per step; the last incomplete batch of each epoch is dropped.
        generator: a CPU ``torch.Generator`` owned by this sampler (its state goes into checkpoints).
    """

    def __init__(self, indices: Tensor, batch_size: int, generator: torch.Generator):
        if len(indices) < batch_size:
            raise ValueError(f"need at least batch_size={batch_size} items to sample from, got {len(indices)}")
        self.indices = indices.cpu()
        self.batch_size = batch_size
        self.generator = generator
        self.batches_per_epoch = len(indices) // batch_size
        self.position = self.batches_per_epoch  # forces a shuffle on the first call
        self.order = torch.arange(len(indices))

    def next(self) -> Tensor:
        """[batch_size] long indices into the pool's items."""
        if self.position >= self.batches_per_epoch:
            self.order = torch.randperm(len(self.indices), generator=self.generator)
            self.position = 0
        start = self.position * self.batch_size
        self.position += 1
        return self.indices[self.order[start:start + self.batch_size]]

    def state_dict(self) -> dict[str, Tensor]:
        """The generator state, the current order and position, for resuming bit for bit."""
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": torch.tensor(self.position)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])
