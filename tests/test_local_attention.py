"""Band attention: blocked == dense == an independent per-query loop, and the blocked form stays linear in T."""

from __future__ import annotations

import math

import pytest
import torch

from adplg.errors import AdplgError
from adplg.models.local_attention import (
    LocalMultiHeadAttention,
    LocalWindowTransformer,
    band_attention_blocked,
    band_attention_dense,
    default_inv_freq,
)


def _qkv(B: int, H: int, T: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, T, d, generator=g) for _ in range(3))


def _loop_reference(q, k, v, w, inv_freq=None, scale=None, mask_padded_keys=False):
    """Per-query float64 loop straight from the spec: keys |i-j| <= w inside [0, n), relative rotary angle
    (i - j + w) * inv_freq on rotate-half pairs (c, c + d/2), padded keys (T <= j < n) with logit 0 / value 0
    (or left out entirely with ``mask_padded_keys``, the wrong variant)."""
    B, H, T, d = q.shape
    half = d // 2
    inv_freq = (default_inv_freq(d) if inv_freq is None else inv_freq).double()
    scale = d ** -0.5 if scale is None else scale
    n = math.ceil(T / w) * w
    q, k, v = q.double(), k.double(), v.double()
    out = torch.zeros(B, H, T, d, dtype=torch.float64)
    for i in range(T):
        js = list(range(max(0, i - w), min(T if mask_padded_keys else n, i + w + 1)))
        logits = []
        for j in js:
            if j >= T:
                logits.append(torch.zeros(B, H, dtype=torch.float64))
                continue
            delta = (i - j + w) * inv_freq  # angle of q relative to k
            qa, qb, ka, kb = q[:, :, i, :half], q[:, :, i, half:], k[:, :, j, :half], k[:, :, j, half:]
            # R(pos_q) q . R(pos_k) k = cos(delta) (qa ka + qb kb) + sin(delta) (qa kb - qb ka)
            logits.append(((qa * ka + qb * kb) * delta.cos() + (qa * kb - qb * ka) * delta.sin()).sum(-1) * scale)
        attn = torch.stack(logits, -1).softmax(-1)  # [B, H, len(js)]
        vals = torch.stack([v[:, :, j] if j < T else torch.zeros(B, H, d, dtype=torch.float64) for j in js], -2)
        out[:, :, i] = (attn[..., None] * vals).sum(-2)
    return out.float()


CASES = [(1, 1), (1, 2), (1, 8), (3, 8), (7, 8), (8, 8), (9, 8), (5, 1), (16, 4), (17, 4), (37, 2), (37, 4),
         (37, 6), (37, 8), (64, 6), (150, 8), (151, 6)]


@pytest.mark.parametrize("T,w", CASES)
def test_blocked_equals_dense(T, w):
    q, k, v = _qkv(2, 3, T, 64, seed=T * 31 + w)
    dense = band_attention_dense(q, k, v, w)
    blocked = band_attention_blocked(q, k, v, w)
    assert dense.shape == blocked.shape == (2, 3, T, 64)
    assert (dense - blocked).abs().max().item() <= 1e-5


@pytest.mark.parametrize("T,w", [(1, 2), (3, 8), (9, 8), (13, 4), (37, 6)])
def test_matches_per_query_loop(T, w):
    q, k, v = _qkv(1, 2, T, 16, seed=T + 100 * w)
    ref = _loop_reference(q, k, v, w)
    for fn in (band_attention_dense, band_attention_blocked):
        assert (fn(q, k, v, w) - ref).abs().max().item() <= 1e-5, fn.__name__


def test_custom_inv_freq_and_scale():
    q, k, v = _qkv(1, 2, 23, 16, seed=5)
    inv_freq = torch.rand(8) * 0.5
    ref = _loop_reference(q, k, v, 4, inv_freq=inv_freq, scale=0.3)
    for fn in (band_attention_dense, band_attention_blocked):
        assert (fn(q, k, v, 4, inv_freq=inv_freq, scale=0.3) - ref).abs().max().item() <= 1e-5


def test_padded_keys_are_not_masked():
    """T=3, w=2: the sequence is padded to 4, so the last query sees one zero key with logit 0 / value 0."""
    q, k, v = _qkv(1, 1, 3, 8, seed=1)
    for fn in (band_attention_blocked, band_attention_dense):
        out = fn(q, k, v, 2)
        assert torch.allclose(out, _loop_reference(q, k, v, 2), atol=1e-6)
        wrong = _loop_reference(q, k, v, 2, mask_padded_keys=True)
        assert torch.allclose(out[:, :, :1], wrong[:, :, :1], atol=1e-6)  # query 0 never reaches key 3
        assert not torch.allclose(out[:, :, 2], wrong[:, :, 2], atol=1e-4)


def _max_intermediate_numel(fn) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Track(TorchDispatchMode):
        biggest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            for t in result if isinstance(result, (tuple, list)) else (result,):
                if isinstance(t, torch.Tensor):
                    Track.biggest = max(Track.biggest, t.numel())
            return result

    with Track():
        fn()
    return Track.biggest


def test_blocked_is_linear_in_length_at_longest_ucf_video():
    """T = 6749 (the longest UCF test video), B=1, H=8, d=64: no tensor of T x T size is ever created, and the
    result agrees with the dense reference on window-aligned slices at both ends."""
    T, w = 6749, 8
    q, k, v = _qkv(1, 8, T, 64, seed=3)
    holder = {}
    biggest = _max_intermediate_numel(lambda: holder.setdefault("out", band_attention_blocked(q, k, v, w)))
    out = holder["out"]
    assert biggest < T * T // 4, f"an intermediate tensor has {biggest} elements (T*T = {T * T})"
    assert torch.isfinite(out).all()
    # head: queries < 200 only see keys < 208 (no padding involved)
    head = band_attention_dense(q[:, :, :208], k[:, :, :208], v[:, :, :208], w)
    assert (out[:, :, :200] - head[:, :, :200]).abs().max().item() <= 1e-5
    # tail: start at a multiple of w so that the dense slice pads exactly as the full sequence does
    start = (T // w) * w - 200
    tail = band_attention_dense(q[:, :, start:], k[:, :, start:], v[:, :, start:], w)
    assert (out[:, :, start + w:] - tail[:, :, w:]).abs().max().item() <= 1e-5


def test_local_window_transformer_long_sequence():
    block = LocalWindowTransformer(dim=1024, window=8, heads=8, dim_head=64, out_dim=256, max_len=6750)
    with torch.no_grad():
        y = block(torch.rand(1, 6749, 1024))
    assert y.shape == (1, 6749, 256)
    assert torch.isfinite(y).all()


def test_local_window_transformer_dense_equals_blocked_and_length_check():
    torch.manual_seed(0)
    block = LocalWindowTransformer(dim=64, window=3, heads=2, dim_head=16, out_dim=8, max_len=40)
    x = torch.rand(2, 29, 64)
    with torch.no_grad():
        blocked = block(x)
        block.attention = "dense"
        dense = block(x)
    assert (blocked - dense).abs().max().item() <= 1e-5
    with pytest.raises(AdplgError, match=r"T=41.*max_len=40"):
        block(torch.rand(1, 41, 64))
    with pytest.raises(AdplgError):
        block.attention = "flash"


def test_local_mha_state_dict_layout():
    mha = LocalMultiHeadAttention(dim=32, window=2, heads=2, dim_head=8)
    sd = mha.state_dict()
    assert set(sd) == {"norm.weight", "norm.bias", "to_qkv.weight", "rotary.inv_freq", "to_out.weight"}
    assert sd["to_qkv.weight"].shape == (48, 32)
    assert torch.allclose(sd["rotary.inv_freq"], default_inv_freq(8))
