"""Local (banded) multi-head attention with rotary position embedding: the ``LSA`` blocks of branch 2.

Semantics (METHOD §2.3, item 3), for a half-window ``w`` and a sequence of length ``T``:

* query ``i`` attends keys ``j`` with ``|i - j| <= w`` (a band of ``2w + 1``); with ``causal=True`` (not in the
  paper) only the past half ``i - w <= j <= i``;
* rotary embedding (rotate-half layout, channels ``c`` and ``c + d/2`` form a pair rotated by
  ``p * inv_freq[c]``) where the query is rotated as if it sat at position ``i + w`` and the key at ``j``,
  so the relative angle is ``(i - j + w) * inv_freq``;
* *autopad*: the sequence is zero-padded to ``n = ceil(T / w) * w``. Padded keys ``T <= j < n`` inside the
  band are **not** masked: they take part in the softmax with logit exactly 0 (a zero key stays zero under
  rotation) and contribute a zero value. Keys before position 0 or at ``j >= n`` are masked. (Causal: every padded
  key lies after its query and is masked.)

Two interchangeable implementations are given: :func:`band_attention_dense` (a plain ``T x n`` reference) and
:func:`band_attention_blocked` (window blocks plus one neighbour block each side; memory linear in ``T``).

Everything here compiles with ``torch.jit.script`` and exports with ``torch.onnx.export`` at a dynamic ``T``
(``adplg export``): no closures, no function tables, no ``torch.finfo`` in the forward paths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adplg.errors import AdplgError

ATTENTION_MODES = ("blocked", "dense")


def default_inv_freq(dim_head: int = 64, base: float = 10000.0) -> Tensor:
    """Rotary inverse frequencies ``1 / base^(arange(0, d, 2) / d)`` -> ``[d/2]`` (float32)."""
    return 1.0 / (base ** (torch.arange(0, dim_head, 2, dtype=torch.float32) / dim_head))


def _rotate_half(x: Tensor) -> Tensor:
    """``[..., d]`` -> ``[..., d]``: ``cat(-x[d/2:], x[:d/2])`` (rotate-half pairing of c and c + d/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate ``x [..., L, d]`` by ``angles [L, d/2]`` (computed in any float dtype, cast to ``x.dtype``)."""
    angles = torch.cat((angles, angles), dim=-1)
    cos = angles.cos().to(device=x.device, dtype=x.dtype)
    sin = angles.sin().to(device=x.device, dtype=x.dtype)
    return x * cos + _rotate_half(x) * sin


def _lowest(dtype: torch.dtype) -> float:
    """``-torch.finfo(dtype).max`` (the masked-logit fill) for the float dtypes, written out for TorchScript."""
    if dtype == torch.float16:
        return -65504.0
    if dtype == torch.bfloat16:
        return -3.3895313892515355e38
    if dtype == torch.float64:
        return -1.7976931348623157e308
    return -3.4028234663852886e38


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, window: int) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one [B, H, T, d] shape, got {list(q.shape)}, "
                         f"{list(k.shape)}, {list(v.shape)}")
    if q.shape[-1] % 2:
        raise ValueError(f"head dim must be even for rotary embedding, got {q.shape[-1]}")
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")


def _defaults(q: Tensor, inv_freq: Tensor | None, scale: float | None) -> tuple[Tensor, float]:
    d = q.shape[-1]
    if inv_freq is None:
        inv_freq = default_inv_freq(d)
    inv_freq = inv_freq.to(device=q.device)
    if inv_freq.dim() != 1 or inv_freq.shape[0] != d // 2:
        raise ValueError(f"inv_freq must have shape [{d // 2}], got {list(inv_freq.shape)}")
    return inv_freq, (d ** -0.5 if scale is None else float(scale))


def band_attention_dense(q: Tensor, k: Tensor, v: Tensor, window: int, inv_freq: Tensor | None = None,
                         scale: float | None = None, causal: bool = False) -> Tensor:
    """Reference band attention as one dense ``T x n`` score matrix.

    Args:
        q: queries ``[B, H, T, d]``.
        k: keys ``[B, H, T, d]``.
        v: values ``[B, H, T, d]``.
        window: half-window ``w``.
        inv_freq: rotary inverse frequencies ``[d/2]`` (default: the standard base-10000 values).
        scale: softmax scale (default ``d ** -0.5``).
        causal: attend the past half of the band only (``i - w <= j <= i``).

    Returns:
        ``[B, H, T, d]``.

    Memory is quadratic in ``T``. Rotary angles use absolute positions (query ``i + w``, key ``j``) computed in
    float64 (on the CPU), so the relative angle ``(i - j + w) * inv_freq`` is exact at any length.
    """
    _check_qkv(q, k, v, window)
    inv_freq, scale = _defaults(q, inv_freq, scale)
    w = int(window)
    T = q.shape[-2]
    n = math.ceil(T / w) * w
    k = F.pad(k, (0, 0, 0, n - T))
    v = F.pad(v, (0, 0, 0, n - T))
    f64 = inv_freq.detach().cpu().to(torch.float64)  # float64 on CPU: not every accelerator has it
    pos_q = torch.arange(T, dtype=torch.float64) + w
    pos_k = torch.arange(n, dtype=torch.float64)
    q = _apply_rotary(q * scale, pos_q[:, None] * f64[None, :])
    k = _apply_rotary(k, pos_k[:, None] * f64[None, :])
    logits = q @ k.transpose(-1, -2)  # [B, H, T, n]
    i = torch.arange(T, device=q.device)[:, None]
    j = torch.arange(n, device=q.device)[None, :]
    outside = (i - j).abs() > w  # [T, n]
    if causal:
        outside = outside | (j > i)
    logits = logits.masked_fill(outside, _lowest(logits.dtype))
    return logits.softmax(dim=-1) @ v


def _look_around(t: Tensor) -> Tensor:
    """Each block with its neighbours: ``[B, H, nb, w, d]`` -> ``[B, H, nb, 3w, d]`` (zero blocks at the ends)."""
    t = F.pad(t, (0, 0, 0, 0, 1, 1))
    return torch.cat((t[:, :, :-2], t[:, :, 1:-1], t[:, :, 2:]), dim=3)


def band_attention_blocked(q: Tensor, k: Tensor, v: Tensor, window: int, inv_freq: Tensor | None = None,
                           scale: float | None = None, causal: bool = False) -> Tensor:
    """Band attention computed per window block (memory linear in ``T``); same result as the dense one.

    The zero-padded sequence (length ``n``) is cut into ``n / w`` blocks of ``w`` queries. Each block sees
    ``3w`` keys: the previous, its own and the next block (``[B, H, n/w, 3w, d]``). Rotary angles use the
    window-local positions: keys ``0 .. 3w-1``, queries ``2w .. 3w-1`` (small, so fp32-accurate at any ``T``).

    Args/returns as :func:`band_attention_dense`.
    """
    _check_qkv(q, k, v, window)
    inv_freq, scale = _defaults(q, inv_freq, scale)
    w = int(window)
    B, H, T, d = q.shape
    nb = math.ceil(T / w)
    n = nb * w
    pad = (0, 0, 0, n - T)
    bq = F.pad(q, pad).reshape(B, H, nb, w, d)
    bk = F.pad(k, pad).reshape(B, H, nb, w, d)
    bv = F.pad(v, pad).reshape(B, H, nb, w, d)

    bk = _look_around(bk)
    bv = _look_around(bv)
    local_pos = torch.arange(3 * w, device=q.device, dtype=inv_freq.dtype)
    angles = local_pos[:, None] * inv_freq[None, :]  # [3w, d/2]
    bk = _apply_rotary(bk, angles)
    bq = _apply_rotary(bq * scale, angles[2 * w:])
    logits = torch.einsum("bhnid,bhnjd->bhnij", bq, bk)  # [B, H, nb, w, 3w]

    blk = torch.arange(nb, device=q.device)[:, None, None]
    i_abs = blk * w + torch.arange(w, device=q.device)[None, :, None]
    j_abs = (blk - 1) * w + torch.arange(3 * w, device=q.device)[None, None, :]
    invalid = (j_abs < 0) | (j_abs >= n) | ((i_abs - j_abs).abs() > w)  # [nb, w, 3w]
    if causal:
        invalid = invalid | (j_abs > i_abs)
    logits = logits.masked_fill(invalid, _lowest(logits.dtype))
    out = torch.einsum("bhnij,bhnjd->bhnid", logits.softmax(dim=-1), bv)
    return out.reshape(B, H, n, d)[:, :, :T]


def check_attention_mode(mode: str) -> str:
    """``mode`` itself when it is a local attention mode (``ATTENTION_MODES``: blocked, dense); else an AdplgError."""
    if mode not in ATTENTION_MODES:
        raise AdplgError(f"unknown local attention mode {mode!r}; expected one of {ATTENTION_MODES}")
    return mode


class RotaryEmbedding(nn.Module):
    """Holds the rotary inverse frequencies ``inv_freq [dim_head/2]`` as a persistent buffer (loaded from
    official checkpoints, where it is saved as ``...attn_fn.rel_pos.inv_freq``)."""

    def __init__(self, dim_head: int = 64, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", default_inv_freq(dim_head, base), persistent=True)


class LocalMultiHeadAttention(nn.Module):
    """Pre-LayerNorm multi-head band attention (``LocalMHA`` of METHOD §2.3).

    ``[B, T, dim]`` -> LN -> ``to_qkv`` (no bias; output splits as ``[q | k | v]``, heads contiguous) ->
    band attention per head (rotary, scale ``dim_head^-0.5``) -> merge heads -> ``to_out`` (no bias) ->
    ``[B, T, dim]``. The residual is added by the caller. ``causal``: keys ``i - w .. i`` only (see the module
    docstring).
    """

    def __init__(self, dim: int, window: int, heads: int = 8, dim_head: int = 64, attention: str = "blocked",
                 causal: bool = False):
        super().__init__()
        if int(window) < 1:
            raise AdplgError(f"local attention window must be >= 1, got {window}")
        self.window = int(window)
        self.causal = bool(causal)
        self.heads = heads
        self.dim_head = dim_head
        self.attention = check_attention_mode(attention)
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.rotary = RotaryEmbedding(dim_head)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split_heads(self, t: Tensor) -> Tensor:
        """``[B, T, heads * dim_head]`` -> ``[B, heads, T, dim_head]``."""
        return t.reshape(t.shape[0], t.shape[1], self.heads, self.dim_head).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, dim]``."""
        B, T, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
        inv_freq = self.rotary.inv_freq
        assert isinstance(inv_freq, Tensor)  # a buffer (narrowed for mypy; TorchScript accepts the assert)
        if self.attention == "dense":
            out = band_attention_dense(q, k, v, self.window, inv_freq=inv_freq, causal=self.causal)  # [B, H, T, dh]
        else:
            out = band_attention_blocked(q, k, v, self.window, inv_freq=inv_freq, causal=self.causal)
        return self.to_out(out.transpose(1, 2).reshape(B, T, self.heads * self.dim_head))


class LocalWindowTransformer(nn.Module):
    """One ``LSA`` block: learned absolute positions + one residual local-attention layer + output head.

    ``x [B, T, dim]`` -> ``x + pos_emb[0:T]`` -> ``x + LocalMHA(x)`` -> LayerNorm -> Linear(dim -> out_dim,
    no bias) -> ``[B, T, out_dim]``. (The official block's feed-forward and token embedding are never used
    in its forward pass, so they are not built here.)

    ``causal=True`` (not in the paper): past-only local attention and no positional embedding (``pos_emb`` is
    None), so an output depends on neither where the sequence starts nor ``max_len``, which then limits nothing.
    """

    __jit_unused_properties__ = ["window", "attention"]  # python-side conveniences, not part of the scripted graph

    def __init__(self, dim: int = 1024, window: int = 2, heads: int = 8, dim_head: int = 64, out_dim: int = 256,
                 max_len: int = 6750, attention: str = "blocked", causal: bool = False):
        super().__init__()
        self.max_len = int(max_len)
        self.causal = bool(causal)
        # the rotary relative angles are the only positions a causal block uses
        self.pos_emb: nn.Embedding | None = None if causal else nn.Embedding(self.max_len, dim)
        self.attn = LocalMultiHeadAttention(dim, window, heads=heads, dim_head=dim_head, attention=attention,
                                            causal=causal)
        self.out_norm = nn.LayerNorm(dim)
        self.out_proj = nn.Linear(dim, out_dim, bias=False)

    @property
    def window(self) -> int:
        """The half-window ``w`` of the block's local attention."""
        return self.attn.window

    @property
    def attention(self) -> str:
        """The local attention implementation: ``blocked`` or ``dense`` (settable; the same weights)."""
        return self.attn.attention

    @attention.setter
    def attention(self, mode: str) -> None:
        self.attn.attention = check_attention_mode(mode)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, dim]`` -> ``[B, T, out_dim]``."""
        pos_emb = self.pos_emb
        if pos_emb is not None:
            T = x.shape[1]
            if T > self.max_len:
                raise AdplgError(f"sequence length T={T} exceeds the positional embedding's max_len={self.max_len}")
            x = x + pos_emb.weight[:T]
        x = x + self.attn(x)
        return self.out_proj(self.out_norm(x))
