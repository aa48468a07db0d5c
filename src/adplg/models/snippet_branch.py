"""Branch 2 (official ``Snippet_Classifer`` = ``net_s``): multi-scale temporal feature interaction and the snippet
classifier (METHOD §2.3). It is the only branch used at inference.

``x [B, T, in_dim]`` -> input adapter -> :class:`TemporalConvEmbedding` -> four parallel
:class:`~adplg.models.local_attention.LocalWindowTransformer` blocks (windows 2/4/6/8, 256-d each, concatenated
to 1024) -> :class:`GlobalTransformer` (2 pre-LN layers) -> :class:`~adplg.models.video_branch.ScoreHead` ->
sigmoid snippet scores ``[B, T]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adplg.errors import AdplgError
from adplg.models.local_attention import LocalWindowTransformer, check_attention_mode
from adplg.models.video_branch import InputAdapter, ScoreHead


class TemporalConvEmbedding(nn.Module):
    """``Conv1d(dim, dim, kernel 3, padding 1)`` over time followed by ReLU: ``[B, T, dim]`` -> ``[B, T, dim]``."""

    def __init__(self, in_dim: int = 1024, out_dim: int = 1024):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, in_dim]`` -> ``[B, T, out_dim]``."""
        return F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)


class GlobalSelfAttention(nn.Module):
    """Full multi-head self-attention: ``to_qkv`` (no bias; ``[q | k | v]``, heads contiguous), softmax scale
    ``dim_head^-0.5``, merge heads, ``to_out`` (with bias) + Dropout. ``[B, T, dim]`` -> ``[B, T, dim]``."""

    def __init__(self, dim: int = 1024, heads: int = 4, dim_head: int = 256, dropout: float = 0.5):
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)

    def _split_heads(self, t: Tensor) -> Tensor:
        """``[B, T, heads * dim_head]`` -> ``[B, heads, T, dim_head]``."""
        return t.reshape(t.shape[0], t.shape[1], self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        B, T, _ = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.dim_head ** -0.5)  # [B, H, T, dh]
        out = out.transpose(1, 2).reshape(B, T, self.heads * self.dim_head)
        return self.dropout(self.to_out(out))


class FeedForward(nn.Module):
    """``Linear -> GELU (erf) -> Dropout -> Linear -> Dropout``: ``[B, T, dim]`` -> ``[B, T, dim]``."""

    def __init__(self, dim: int = 1024, hidden_dim: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class GlobalTransformerLayer(nn.Module):
    """``x = x + Attn(LN(x))``; ``x = x + FF(LN(x))``."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = GlobalSelfAttention(dim, heads, dim_head, dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))


class GlobalTransformer(nn.Module):
    """A stack of ``depth`` :class:`GlobalTransformerLayer` with no final norm. ``[B, T, dim]`` -> same."""

    def __init__(self, dim: int = 1024, depth: int = 2, heads: int = 4, dim_head: int = 256, mlp_dim: int = 1024,
                 dropout: float = 0.5):
        super().__init__()
        self.layers = nn.ModuleList(
            GlobalTransformerLayer(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        for layer in self.layers:
            x = layer(x)
        return x


class SnippetBranch(nn.Module):
    """Branch 2: snippet-level anomaly scores. ``x [B, T, in_dim]`` -> sigmoid scores ``[B, T]``.

    ``attention`` selects the local-attention implementation (``"blocked"``: memory linear in ``T``;
    ``"dense"``: the plain reference); both give the same result. ``T`` may not exceed ``max_len``.
    The forward pass compiles with ``torch.jit.script`` once the input adapter is traced (``adplg export``).
    """

    __jit_unused_properties__ = ["attention"]  # a python-side switch, not part of the scripted graph

    def __init__(self, in_dim: int = 1024, model_dim: int = 1024, windows: Sequence[int] = (2, 4, 6, 8),
                 local_heads: int = 8, local_dim_head: int = 64, local_out_dim: int = 256, max_len: int = 6750,
                 global_depth: int = 2, global_heads: int = 4, global_dim_head: int = 256, mlp_dim: int = 1024,
                 dropout: float = 0.5, hidden_dim: int = 32, cls_dropout: float = 0.7,
                 input_adapter: str = "linear", attention: str = "blocked", input_standardize: bool = False):
        super().__init__()
        check_attention_mode(attention)
        if not windows:
            raise AdplgError("SnippetBranch needs at least one local window")
        self.max_len = int(max_len)
        self.windows = tuple(int(w) for w in windows)
        self.input_adapter = InputAdapter(in_dim, model_dim, input_adapter, input_standardize)
        self.embed = TemporalConvEmbedding(model_dim, model_dim)
        self.local_blocks = nn.ModuleList(
            LocalWindowTransformer(model_dim, w, heads=local_heads, dim_head=local_dim_head, out_dim=local_out_dim,
                                   max_len=max_len, attention=attention)
            for w in self.windows)
        global_dim = local_out_dim * len(self.windows)
        self.global_transformer = GlobalTransformer(global_dim, global_depth, global_heads, global_dim_head, mlp_dim,
                                                    dropout)
        self.classifier = ScoreHead(global_dim, hidden_dim, cls_dropout)

    @property
    def attention(self) -> str:
        """The local attention implementation of every block: ``blocked`` or ``dense`` (settable)."""
        block = self.local_blocks[0]
        assert isinstance(block, LocalWindowTransformer)
        return block.attention

    @attention.setter
    def attention(self, mode: str) -> None:
        for block in self.local_blocks:
            assert isinstance(block, LocalWindowTransformer)
            block.attention = mode

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, in_dim]`` -> sigmoid snippet scores ``[B, T]`` (``T <= max_len``)."""
        if x.dim() == 3 and x.shape[1] > self.max_len:
            raise AdplgError(f"sequence length T={x.shape[1]} exceeds the snippet branch's max_len={self.max_len} "
                             f"(the learned positional embedding has {self.max_len} rows)")
        x = self.embed(self.input_adapter(x))
        x = torch.cat([block(x) for block in self.local_blocks], dim=-1)  # [B, T, global_dim]
        return self.classifier(self.global_transformer(x))
