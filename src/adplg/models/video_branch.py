"""Branch 1 (official ``Video_Classifer`` = ``net_v``): video snippet separation and fusion (VSSF) and the video
classifier (METHOD §2.2). Also holds two small building blocks shared with branch 2: :class:`InputAdapter` and
:class:`ScoreHead`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adplg.errors import AdplgError

INPUT_ADAPTERS = ("linear", "zero_pad")


class InputAdapter(nn.Module):
    """Maps input features ``[B, T, in_dim]`` to ``[B, T, model_dim]``.

    * ``in_dim == model_dim``: identity, no parameters.
    * ``"linear"``: ``nn.Linear(in_dim, model_dim)`` (the official, commented-out ``modal_fusion``).
    * ``"zero_pad"``: append ``model_dim - in_dim`` zero channels (exactly a zero-padded input; needs
      ``in_dim < model_dim``).

    ``standardize=True`` (an improvement option, off in the official model) first maps every channel to
    ``(x - mean) / std`` with statistics of the training features, held as buffers so they travel with the weights.
    """

    def __init__(self, in_dim: int, model_dim: int, mode: str = "linear", standardize: bool = False):
        super().__init__()
        if mode not in INPUT_ADAPTERS:
            raise AdplgError(f"unknown input_adapter {mode!r}; expected one of {INPUT_ADAPTERS}")
        if in_dim < 1 or model_dim < 1:
            raise AdplgError(f"feature dims must be positive, got in_dim={in_dim}, model_dim={model_dim}")
        if mode == "zero_pad" and in_dim > model_dim:
            raise AdplgError(f"input_adapter 'zero_pad' needs in_dim <= model_dim, got in_dim={in_dim} > "
                             f"model_dim={model_dim}; use 'linear'")
        self.in_dim = int(in_dim)
        self.model_dim = int(model_dim)
        self.mode = "identity" if in_dim == model_dim else mode
        self.proj = nn.Linear(in_dim, model_dim) if self.mode == "linear" else None
        self.standardize = standardize
        if standardize:
            self.register_buffer("mean", torch.zeros(in_dim))
            self.register_buffer("std", torch.ones(in_dim))

    @torch.no_grad()
    def set_statistics(self, features: Tensor) -> None:
        """Per-channel mean and std of ``features [..., in_dim]`` (the training set), for ``standardize``."""
        flat = features.reshape(-1, self.in_dim).float()
        assert isinstance(self.mean, Tensor) and isinstance(self.std, Tensor)  # the standardize buffers
        self.mean.copy_(flat.mean(dim=0))
        self.std.copy_(flat.std(dim=0).clamp_min(1e-6))

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, in_dim]`` -> ``[B, T, model_dim]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise AdplgError(f"expected features of shape [B, T, {self.in_dim}], got {list(x.shape)}")
        if self.standardize:
            assert isinstance(self.mean, Tensor) and isinstance(self.std, Tensor)  # the standardize buffers
            x = (x - self.mean) / self.std
        if self.mode == "identity":
            return x
        if self.mode == "linear":
            assert self.proj is not None  # built for the linear mode
            return self.proj(x)
        return F.pad(x, (0, self.model_dim - self.in_dim))

    def extra_repr(self) -> str:
        """The adapter's sizes and mode, shown in the module's ``repr``."""
        return f"in_dim={self.in_dim}, model_dim={self.model_dim}, mode={self.mode}"


class ScoreHead(nn.Module):
    """Per-item score MLP: ``Linear(in, hidden) -> ReLU -> Dropout(p) -> Linear(hidden, 1) -> Sigmoid``.

    ``[..., in_dim]`` -> ``[...]`` (the trailing 1 is squeezed). Linear weights are ``xavier_normal_``,
    biases keep the PyTorch default init (as the official ``classifier_v`` / ``classifier_s``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 32, dropout: float = 0.7):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, 1)
        nn.init.xavier_normal_(self.fc1.weight)
        nn.init.xavier_normal_(self.fc2.weight)

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., in_dim]`` -> sigmoid scores ``[...]``."""
        return torch.sigmoid(self.fc2(self.dropout(F.relu(self.fc1(x))))).squeeze(-1)


def minmax_normalise(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Min-max along the last axis: ``(x - min) / (max - min + eps)``; ``[..., T]`` -> ``[..., T]``."""
    lo = x.min(dim=-1, keepdim=True).values
    hi = x.max(dim=-1, keepdim=True).values
    return (x - lo) / (hi - lo + eps)


@dataclass(kw_only=True)
class VSSFOutput:
    """Outputs of :class:`VSSF` (``Bh`` = videos per half, ``T`` snippets, ``d`` = attn_dim)."""

    n_feats: Tensor   # [Bh, d] fN
    a_feats: Tensor   # [Bh, d] fA
    an_feats: Tensor  # [Bh, d] fAN
    a_att: Tensor     # [Bh, T] sA
    an_att: Tensor    # [Bh, T] sAN


class VSSF(nn.Module):
    """Video snippet separation and fusion: per-snippet (diagonal) attention weights and attention-pooled features.

    Input ``x [B, T, D]`` with the normal half ``N = x[:B/2]`` and the abnormal half ``A = x[B/2:]`` (video ``i``
    of one half pairs with video ``i`` of the other). The same ``query``/``key``/``value`` projections
    (``D -> d``, with bias; the official 1x1 convolutions) serve both halves::

        sA  = softmax_t(<qA_t, kA_t> / sqrt(d))     # self attention         [Bh, T]
        sAN = softmax_t(<qN_t, kA_t> / sqrt(d))     # normal query, abnormal key
        sN  = softmax_t(<qN_t, kN_t> / sqrt(d))
        fA = sum_t sA_t vA_t ;  fAN = sum_t sAN_t vA_t ;  fN = sum_t sN_t vN_t   # [Bh, d]
    """

    def __init__(self, in_dim: int = 1024, attn_dim: int = 512):
        super().__init__()
        self.attn_dim = attn_dim
        self.query = nn.Linear(in_dim, attn_dim)
        self.key = nn.Linear(in_dim, attn_dim)
        self.value = nn.Linear(in_dim, attn_dim)

    def forward(self, x: Tensor) -> VSSFOutput:
        """``x [B, T, D]`` (normal half, then abnormal half) -> :class:`VSSFOutput` (attentions and pooled features)."""
        B = x.shape[0]
        if B % 2:
            raise AdplgError(f"the video branch needs an even batch (normal half + abnormal half), got B={B}")
        normal, abnormal = x[: B // 2], x[B // 2:]
        qn, kn, vn = self.query(normal), self.key(normal), self.value(normal)
        qa, ka, va = self.query(abnormal), self.key(abnormal), self.value(abnormal)
        scale = 1.0 / math.sqrt(self.attn_dim)
        a_att = ((qa * ka).sum(-1) * scale).softmax(dim=-1)
        an_att = ((qn * ka).sum(-1) * scale).softmax(dim=-1)
        n_att = ((qn * kn).sum(-1) * scale).softmax(dim=-1)
        return VSSFOutput(
            n_feats=torch.einsum("bt,btd->bd", n_att, vn),
            a_feats=torch.einsum("bt,btd->bd", a_att, va),
            an_feats=torch.einsum("bt,btd->bd", an_att, va),
            a_att=a_att,
            an_att=an_att,
        )


@dataclass(kw_only=True)
class VideoBranchOutput:
    """Outputs of :class:`VideoBranch` for a batch of ``B`` videos (``Bh = B/2`` per half) of ``T`` snippets."""

    scores: Tensor      # [B] sigmoid video scores, normal half first then abnormal half (= cat(fN, fA) order)
    a_att_norm: Tensor  # [Bh, T] min-max(+1e-8) normalised self attention sA (pseudo-label source)
    a_att: Tensor       # [Bh, T] sA
    an_att: Tensor      # [Bh, T] sAN (normal query, abnormal key)
    n_feats: Tensor     # [Bh, attn_dim] fN
    a_feats: Tensor     # [Bh, attn_dim] fA
    an_feats: Tensor    # [Bh, attn_dim] fAN


class VideoBranch(nn.Module):
    """Branch 1: input adapter -> :class:`VSSF` -> :class:`ScoreHead` on ``cat(fN, fA)``.

    ``x [B, T, in_dim]`` (first half normal, second half abnormal) -> :class:`VideoBranchOutput`.
    """

    def __init__(self, in_dim: int = 1024, model_dim: int = 1024, attn_dim: int = 512, hidden_dim: int = 32,
                 dropout: float = 0.7, input_adapter: str = "linear", input_standardize: bool = False):
        super().__init__()
        self.input_adapter = InputAdapter(in_dim, model_dim, input_adapter, input_standardize)
        self.vssf = VSSF(model_dim, attn_dim)
        self.classifier = ScoreHead(attn_dim, hidden_dim, dropout)

    def forward(self, x: Tensor) -> VideoBranchOutput:
        """``x [B, T, in_dim]`` (normal half, then abnormal half) -> :class:`VideoBranchOutput` (``scores [B]``)."""
        fused = self.vssf(self.input_adapter(x))
        scores = self.classifier(torch.cat((fused.n_feats, fused.a_feats), dim=0))
        return VideoBranchOutput(
            scores=scores,
            a_att_norm=minmax_normalise(fused.a_att),
            a_att=fused.a_att,
            an_att=fused.an_att,
            n_feats=fused.n_feats,
            a_feats=fused.a_feats,
            an_feats=fused.an_feats,
        )
