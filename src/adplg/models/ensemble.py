"""Several independently trained snippet branches scoring as one: the mean of their snippet scores."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adplg.models.snippet_branch import SnippetBranch
from adplg.models.video_branch import InputAdapter


class SnippetEnsemble(nn.Module):
    """``x [B, T, D]`` -> the mean of the members' sigmoid scores ``[B, T]``. The members must share the input
    dimension; ``max_len`` is the smallest of theirs."""

    def __init__(self, members: Sequence[SnippetBranch | SnippetEnsemble]):
        super().__init__()
        if not members:
            raise ValueError("SnippetEnsemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.max_len: int = min(m.max_len for m in members)

    @property
    def input_adapter(self) -> InputAdapter:
        """The first member's input adapter (its ``in_dim`` is every member's)."""
        adapter = self.members[0].input_adapter
        assert isinstance(adapter, InputAdapter)  # a member is a SnippetBranch (or an ensemble of them)
        return adapter

    def member_scores(self, x: Tensor) -> Tensor:
        """``x [B, T, D]`` -> every member's sigmoid scores ``[K, B, T]`` (training gives each member its own
        loss)."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, D]`` -> the mean of the members' sigmoid scores ``[B, T]``."""
        return self.member_scores(x).mean(dim=0)
