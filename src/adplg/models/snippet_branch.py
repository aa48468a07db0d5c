"""Branch 2 (official ``Snippet_Classifer`` = ``net_s``): multi-scale temporal feature interaction and the snippet
classifier (METHOD §2.3). It is the only branch used at inference.

``x [B, T, in_dim]`` -> input adapter -> :class:`TemporalConvEmbedding` -> four parallel
:class:`~adplg.models.local_attention.LocalWindowTransformer` blocks (windows 2/4/6/8, 256-d each, concatenated
to 1024) -> :class:`GlobalTransformer` (2 pre-LN layers) -> :class:`~adplg.models.video_branch.ScoreHead` ->
sigmoid snippet scores ``[B, T]``.

``causal=True`` (not in the paper, ``model.causal``): every stage sees only the current and past snippets -- the
convolution is padded on the left only, the local windows attend keys ``i - w .. i`` without absolute positions, and
the global attention is banded: query ``i`` attends ``i - causal_window + 1 .. i``. A score then depends on the last
:func:`receptive_field` snippets and on nothing else (not on where the sequence starts, nor on what follows), so a
stream scored over a buffer of ``receptive_field + 1`` snippets reproduces the whole video's scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adplg.errors import AdplgError
from adplg.models.local_attention import LocalWindowTransformer, check_attention_mode
from adplg.models.video_branch import InputAdapter, ScoreHead

# sequences of any length: a causal branch has no positional table (what max_len bounds otherwise)
UNBOUNDED_LEN = 2**31 - 1


class TemporalConvEmbedding(nn.Module):
    """``Conv1d(dim, dim, kernel 3, padding 1)`` over time followed by ReLU: ``[B, T, dim]`` -> ``[B, T, dim]``.
    ``causal``: two zeros on the left instead, so output ``i`` depends on inputs ``i - 2 .. i``."""

    def __init__(self, in_dim: int = 1024, out_dim: int = 1024, causal: bool = False):
        super().__init__()
        self.left_pad = 2 if causal else 0  # the past reach of the convolution (kernel - 1 when causal)
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=3, stride=1, padding=0 if causal else 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, in_dim]`` -> ``[B, T, out_dim]``."""
        x = x.transpose(1, 2)
        if self.left_pad > 0:
            x = F.pad(x, (self.left_pad, 0))
        return F.relu(self.conv(x)).transpose(1, 2)


def causal_band(queries: int, keys: int, window: int, device: torch.device) -> Tensor:
    """Banded causal attention mask ``[queries, keys]`` (True = attend) for queries that are the last ``queries`` of
    ``keys`` positions: the query at position ``p`` attends keys ``p - window + 1 .. p`` (its own key always)."""
    p = torch.arange(keys - queries, keys, device=device)[:, None]
    j = torch.arange(keys, device=device)[None, :]
    return (j <= p) & (j > p - window)


class GlobalSelfAttention(nn.Module):
    """Full multi-head self-attention: ``to_qkv`` (no bias; ``[q | k | v]``, heads contiguous), softmax scale
    ``dim_head^-0.5``, merge heads, ``to_out`` (with bias) + Dropout. ``[B, T, dim]`` -> ``[B, T, dim]``.
    ``causal_window = c > 0``: banded causal attention instead, query ``i`` attends keys ``i - c + 1 .. i``."""

    def __init__(self, dim: int = 1024, heads: int = 4, dim_head: int = 256, dropout: float = 0.5,
                 causal_window: int = 0):
        super().__init__()
        if int(causal_window) < 0:
            raise AdplgError(f"causal_window must be >= 0 (0: full attention), got {causal_window}")
        self.causal_window = int(causal_window)
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)

    def _split_heads(self, t: Tensor) -> Tensor:
        """``[B, T, heads * dim_head]`` -> ``[B, heads, T, dim_head]``."""
        return t.reshape(t.shape[0], t.shape[1], self.heads, self.dim_head).transpose(1, 2)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, T, dim]`` -> queries, keys, values, each ``[B, heads, T, dim_head]``."""
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None) -> Tensor:
        """Queries ``q [B, H, Tq, dh]`` over keys and values ``[B, H, Tk, dh]`` (``allowed [Tq, Tk]``, True = attend;
        None: every key), heads merged, ``to_out`` + Dropout -> ``[B, Tq, dim]``."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.dim_head ** -0.5)
        out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], self.heads * self.dim_head)
        return self.dropout(self.to_out(out))

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        q, k, v = self.project(x)
        T = x.shape[1]
        allowed = causal_band(T, T, self.causal_window, x.device) if self.causal_window > 0 else None
        return self.attend(q, k, v, allowed)


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

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, causal_window: int = 0):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = GlobalSelfAttention(dim, heads, dim_head, dropout, causal_window)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        x = x + self.attn(self.attn_norm(x))
        return x + self.ff(self.ff_norm(x))

    def extend(self, x: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A causal layer's outputs ``[B, n, dim]`` for ``n`` new snippets ``x [B, n, dim]`` that follow the snippets
        whose attention keys and values are ``past_k``, ``past_v`` ``[B, heads, P, dim_head]`` (at least the last
        ``causal_window - 1`` of them, or all since the start); also returns the keys and values with the new ones
        appended (``[B, heads, P + n, dim_head]``). What :meth:`forward` gives those snippets over the whole
        sequence: the incremental form of streaming (:class:`adplg.models.streaming.CausalStream`)."""
        q, k, v = self.attn.project(self.attn_norm(x))
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        x = x + self.attn.attend(q, k, v, causal_band(q.shape[2], k.shape[2], self.attn.causal_window, x.device))
        return x + self.ff(self.ff_norm(x)), k, v


class GlobalTransformer(nn.Module):
    """A stack of ``depth`` :class:`GlobalTransformerLayer` with no final norm. ``[B, T, dim]`` -> same.
    ``causal_window > 0``: banded causal attention in every layer (:class:`GlobalSelfAttention`)."""

    def __init__(self, dim: int = 1024, depth: int = 2, heads: int = 4, dim_head: int = 256, mlp_dim: int = 1024,
                 dropout: float = 0.5, causal_window: int = 0):
        super().__init__()
        self.layers = nn.ModuleList(
            GlobalTransformerLayer(dim, heads, dim_head, mlp_dim, dropout, causal_window) for _ in range(depth))

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

    ``causal=True`` (see the module docstring): ``max_len`` is ignored (the attribute is :data:`UNBOUNDED_LEN`) and
    each score depends on the last :meth:`receptive_field` snippets only.
    """

    __jit_unused_properties__ = ["attention"]  # a python-side switch, not part of the scripted graph

    def __init__(self, in_dim: int = 1024, model_dim: int = 1024, windows: Sequence[int] = (2, 4, 6, 8),
                 local_heads: int = 8, local_dim_head: int = 64, local_out_dim: int = 256, max_len: int = 6750,
                 global_depth: int = 2, global_heads: int = 4, global_dim_head: int = 256, mlp_dim: int = 1024,
                 dropout: float = 0.5, hidden_dim: int = 32, cls_dropout: float = 0.7,
                 input_adapter: str = "linear", attention: str = "blocked", input_standardize: bool = False,
                 causal: bool = False, causal_window: int = 1024):
        super().__init__()
        check_attention_mode(attention)
        if not windows:
            raise AdplgError("SnippetBranch needs at least one local window")
        if causal and int(causal_window) < 1:
            raise AdplgError(f"SnippetBranch: expected causal_window >= 1, got {causal_window}")
        self.causal = bool(causal)
        self.causal_window = int(causal_window) if causal else 0
        self.max_len = UNBOUNDED_LEN if causal else int(max_len)
        self.windows = tuple(int(w) for w in windows)
        self.global_depth = int(global_depth)
        self.input_adapter = InputAdapter(in_dim, model_dim, input_adapter, input_standardize)
        self.embed = TemporalConvEmbedding(model_dim, model_dim, causal=causal)
        self.local_blocks = nn.ModuleList(
            LocalWindowTransformer(model_dim, w, heads=local_heads, dim_head=local_dim_head, out_dim=local_out_dim,
                                   max_len=max_len, attention=attention, causal=causal)
            for w in self.windows)
        global_dim = local_out_dim * len(self.windows)
        self.global_transformer = GlobalTransformer(global_dim, global_depth, global_heads, global_dim_head, mlp_dim,
                                                    dropout, self.causal_window)
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

    def receptive_field(self) -> int:
        """How many past snippets a causal score depends on: ``R = 2 + max(windows) + global_depth *
        (causal_window - 1)`` (the convolution's 2, the widest past-only local window, then each banded global
        layer). Score ``i`` is a function of snippets ``i - R .. i``. An :class:`AdplgError` for a bidirectional
        branch (its scores depend on the whole sequence)."""
        if not self.causal:
            raise AdplgError("receptive_field: the snippet branch is not causal (model.causal false): its scores "
                             "depend on the whole sequence")
        return self.embed.left_pad + max(self.windows) + self.global_depth * (self.causal_window - 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, in_dim]`` -> sigmoid snippet scores ``[B, T]`` (``T <= max_len``)."""
        if x.dim() == 3 and x.shape[1] > self.max_len:
            raise AdplgError(f"sequence length T={x.shape[1]} exceeds the snippet branch's max_len={self.max_len} "
                             f"(the learned positional embedding has {self.max_len} rows)")
        x = self.embed(self.input_adapter(x))
        x = torch.cat([block(x) for block in self.local_blocks], dim=-1)  # [B, T, global_dim]
        return self.classifier(self.global_transformer(x))


def snippet_branches(model: nn.Module) -> list[SnippetBranch]:
    """The :class:`SnippetBranch` modules of ``model``: itself, or every member of an ensemble."""
    return [m for m in model.modules() if isinstance(m, SnippetBranch)]


def is_causal(model: nn.Module) -> bool:
    """Whether ``model`` (a snippet branch or an ensemble of them) scores causally: it holds snippet branches and
    every one of them is causal. False for anything else (e.g. a scripted model)."""
    branches = snippet_branches(model)
    return bool(branches) and all(b.causal for b in branches)


def receptive_field(model: nn.Module) -> int:
    """Past snippets a score of the causal ``model`` depends on (the largest over an ensemble's members):
    :meth:`SnippetBranch.receptive_field`. A buffer of ``receptive_field(model) + 1`` snippets ending at snippet ``i``
    gives snippet ``i`` its whole-video score. An :class:`AdplgError` when ``model`` is not causal."""
    if not is_causal(model):
        raise AdplgError(f"receptive_field: expected a causal snippet branch (model.causal true) or an ensemble of "
                         f"them, got a {'bidirectional ' if snippet_branches(model) else ''}{type(model).__name__}")
    return max(b.receptive_field() for b in snippet_branches(model))
