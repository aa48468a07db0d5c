"""Incremental scoring of a causal snippet branch: each new snippet's score from cached state, equal to the score the
whole video's forward pass gives it.

A causal :class:`~adplg.models.snippet_branch.SnippetBranch` (``model.causal``) computes a snippet's score from the
current and past snippets only, and the past's intermediate results never change once computed. So
:class:`CausalStream` keeps, per branch and per crop row, just what the next snippets need:

* the last 2 input-adapter outputs (the left-padded ``k = 3`` convolution's reach);
* the last ``max(windows)`` convolution outputs (the past-only local windows' reach; the local blocks are run on
  those plus the new snippets, and their outputs for the new ones kept);
* per global layer, the attention keys and values of the last ``causal_window - 1`` snippets
  (:meth:`~adplg.models.snippet_branch.GlobalTransformerLayer.extend`: only the new snippets are projected, and they
  attend the cached keys).

A push of ``n`` snippets then costs ``n`` tokens of every layer plus ``n x causal_window`` attention logits, instead
of a forward pass over the ``receptive_field + n`` snippets. The math is the modules' own, so the scores equal the
offline ones up to float rounding (tests/test_causal.py checks 1e-5). An ensemble streams every member and averages
as :class:`~adplg.models.ensemble.SnippetEnsemble` does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adplg.errors import AdplgError
from adplg.models.ensemble import SnippetEnsemble
from adplg.models.local_attention import LocalWindowTransformer
from adplg.models.snippet_branch import GlobalTransformerLayer, SnippetBranch


def _last(t: Tensor, count: int) -> Tensor:
    """The last ``count`` (>= 0) entries of ``t [B, L, ...]`` along dim 1 (all of them when fewer)."""
    return t[:, max(0, t.shape[1] - count):]


class _BranchStream:
    """The cached state of one causal branch (see the module docstring); ``step`` scores new snippets."""

    def __init__(self, branch: SnippetBranch):
        if not branch.causal:
            raise AdplgError("incremental scoring needs a causal snippet branch (model.causal true)")
        self.branch = branch
        self.adapted: Tensor | None = None  # [B, <= 2, model_dim]
        self.embedded: Tensor | None = None  # [B, <= max(windows), model_dim]
        self.keys: list[Tensor] = []  # per global layer [B, heads, <= causal_window - 1, dim_head]
        self.values: list[Tensor] = []

    def step(self, x: Tensor) -> Tensor:
        """Scores ``[B, n]`` of ``n`` new snippets ``x [B, n, in_dim]`` (the rows ``B`` fixed by the first step)."""
        b, n = self.branch, x.shape[1]
        adapted = b.input_adapter(x)
        if self.adapted is not None:
            adapted = torch.cat([self.adapted, adapted], dim=1)
        self.adapted = _last(adapted, b.embed.left_pad)
        embedded = b.embed(adapted)[:, -n:]  # the left zero padding falls on the cached context, or the stream start
        if self.embedded is not None:
            embedded = torch.cat([self.embedded, embedded], dim=1)
        self.embedded = _last(embedded, max(b.windows))
        blocks: list[Tensor] = []
        for block in b.local_blocks:
            assert isinstance(block, LocalWindowTransformer)
            blocks.append(block(embedded)[:, -n:])
        h = torch.cat(blocks, dim=-1)  # [B, n, global_dim]
        for index, layer in enumerate(b.global_transformer.layers):
            assert isinstance(layer, GlobalTransformerLayer)
            if len(self.keys) <= index:
                empty = h.new_zeros(h.shape[0], layer.attn.heads, 0, layer.attn.dim_head)
                self.keys.append(empty)
                self.values.append(empty)
            h, keys, values = layer.extend(h, self.keys[index], self.values[index])
            keep = layer.attn.causal_window - 1
            self.keys[index] = keys[:, :, max(0, keys.shape[2] - keep):]
            self.values[index] = values[:, :, max(0, values.shape[2] - keep):]
        return b.classifier(h)


class CausalStream:
    """Scores a causal snippet branch, or an ensemble of them, snippet by snippet: :meth:`step` takes the next ``n``
    snippets ``[B, n, in_dim]`` (``B`` rows, e.g. crops, fixed by the first step) and returns their sigmoid scores
    ``[B, n]``, equal to those of the model's forward pass over the whole sequence. Call it under ``torch.no_grad``
    with the model in eval mode (dropout would make the scores random)."""

    def __init__(self, model: nn.Module):
        self.model = model
        if isinstance(model, SnippetEnsemble):
            self.members: list[CausalStream] = [CausalStream(m) for m in model.members]
            self.branch: _BranchStream | None = None
        elif isinstance(model, SnippetBranch):
            self.members, self.branch = [], _BranchStream(model)
        else:
            raise AdplgError(f"incremental scoring: expected a causal SnippetBranch or SnippetEnsemble, got "
                             f"{type(model).__name__}")

    def step(self, x: Tensor) -> Tensor:
        """``x [B, n, in_dim]`` (the next ``n`` snippets) -> their scores ``[B, n]``."""
        if x.dim() != 3 or x.shape[1] < 1:
            raise AdplgError(f"incremental scoring: expected new snippets [B, n >= 1, D], got {list(x.shape)}")
        if self.branch is not None:
            return self.branch.step(x)
        return torch.stack([member.step(x) for member in self.members]).mean(dim=0)
