"""Running the snippet branch over whole videos: the one place where features become snippet scores.

``net_s`` maps features ``[B, T, D]`` to scores ``[B, T]``. Over one video (:func:`video_snippet_scores`):

* its crops ``[C, T, D]`` go through the model together (row chunks of at most ``batch_snippets`` crop-snippets,
  :func:`forward_in_chunks`) and their scores are averaged;
* a video longer than the model's ``max_len`` snippets (its positional embedding rows) is scored in windows of
  ``max_len`` snippets overlapping by ``max_len // 4`` (:func:`window_starts`); where windows overlap their scores
  are averaged (:func:`forward_windowed`); a causal model (``model.causal``) has no such limit: one forward;
* the averaged scores may be smoothed by a centred or a trailing moving average (:func:`smooth_scores`,
  ``eval.smooth_window`` and ``eval.smooth_mode``).

Evaluation scores many videos: :func:`batched_snippet_scores` puts videos of equal length through one forward
(:func:`length_batches`), with the same chunk and window code, so each video's scores are those of
:func:`video_snippet_scores` up to the floating-point effect of the batch size.

The model is in eval mode during the forward passes (its previous mode is restored), under ``torch.no_grad`` and the
``precision`` of :func:`adplg.precision.autocast`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from adplg.config import EvalConfig
from adplg.errors import AdplgError
from adplg.precision import autocast

# crop-snippets per forward pass unless the caller says otherwise: the config's eval.batch_snippets default
DEFAULT_BATCH_SNIPPETS: int = EvalConfig.model_fields["batch_snippets"].default


SMOOTH_MODES = ("centred", "trailing")


def smooth_scores(scores: np.ndarray, window: int, mode: str = "centred") -> np.ndarray:
    """Moving average of snippet scores ``[T]`` over ``window`` snippets -> ``[T]``; ``window <= 1`` returns
    ``scores`` unchanged. ``mode``: ``centred`` (the window around each snippet) or ``trailing`` (snippet ``i`` and
    the ``window - 1`` before it: what live scoring can do, :class:`adplg.live.online.OnlineScorer` uses this very
    function). The edges average the snippets available."""
    if mode not in SMOOTH_MODES:
        raise AdplgError(f"unknown smoothing mode {mode!r}: expected one of {', '.join(SMOOTH_MODES)}",
                         parameter="smooth_mode")
    if window <= 1 or len(scores) < 2:
        return scores
    kernel = np.ones(window)
    if mode == "trailing":  # the first T entries of the full convolution: sums of scores[i - window + 1 .. i]
        total = np.convolve(scores, kernel)[:len(scores)]
        count = np.minimum(np.arange(1, len(scores) + 1), window)
        return total / count
    total = np.convolve(scores, kernel, mode="same")
    count = np.convolve(np.ones_like(scores), kernel, mode="same")
    return total / count


def window_starts(length: int, max_len: int) -> list[int]:
    """First snippets of the windows that cover ``length`` snippets with windows of ``max_len``, overlapping by
    ``max_len // 4`` (the last window ends at the last snippet)."""
    step = max(1, max_len - max_len // 4)
    starts = list(range(0, length - max_len + 1, step))
    if starts[-1] + max_len < length:
        starts.append(length - max_len)
    return starts


def length_batches(lengths: list[int], crops: list[int], batch_snippets: int) -> list[list[int]]:
    """Group video indices of equal length into batches of at most ``batch_snippets`` crop-snippets (at least one
    video each). Equal lengths need no padding, so batching changes nothing in the result."""
    by_length: dict[int, list[int]] = {}
    for v, T in enumerate(lengths):
        by_length.setdefault(T, []).append(v)
    batches = []
    for T, videos in sorted(by_length.items()):
        batch: list[int] = []
        for v in videos:
            if batch and (sum(crops[u] for u in batch) + crops[v]) * T > batch_snippets:
                batches.append(batch)
                batch = []
            batch.append(v)
        batches.append(batch)
    return batches


def forward_in_chunks(net_s: nn.Module, x: torch.Tensor, batch_snippets: int) -> torch.Tensor:
    """``net_s`` over ``x [N, T, D]`` in row chunks of at most ``batch_snippets`` snippets (at least one row), so a
    long video's crops never exceed the memory bound. Returns float32 scores ``[N, T]``."""
    rows = max(1, batch_snippets // max(1, x.shape[1]))
    return torch.cat([net_s(chunk).float() for chunk in x.split(rows)])


def forward_windowed(net_s: nn.Module, x: torch.Tensor, batch_snippets: int,
                     max_len: int | None = None) -> torch.Tensor:
    """Scores ``[N, T]`` of ``x [N, T, D]`` like :func:`forward_in_chunks`, also when ``T`` exceeds ``max_len``
    (default ``net_s.max_len``; None or 0 there: no limit): then the sequence is scored in overlapping windows of
    ``max_len`` snippets (:func:`window_starts`), batched, and overlapping scores are averaged."""
    max_len = max_len or getattr(net_s, "max_len", None)
    length = x.shape[1]
    if not max_len or length <= max_len:
        return forward_in_chunks(net_s, x, batch_snippets)
    starts = window_starts(length, int(max_len))
    windows = torch.cat([x[:, s:s + max_len] for s in starts])  # [W * N, max_len, D], window-major
    scores = forward_in_chunks(net_s, windows, batch_snippets).view(len(starts), x.shape[0], max_len)
    total = torch.zeros(x.shape[0], length, dtype=scores.dtype, device=scores.device)
    count = torch.zeros(length, dtype=scores.dtype, device=scores.device)
    for w, s in enumerate(starts):
        total[:, s:s + max_len] += scores[w]
        count[s:s + max_len] += 1
    return total / count


@contextlib.contextmanager
def _scoring(net_s: nn.Module, device: torch.device | str, precision: str) -> Iterator[None]:
    """``net_s`` in eval mode under ``no_grad`` and the precision's autocast; its previous mode restored after."""
    was_training = net_s.training
    net_s.eval()
    try:
        with torch.no_grad(), autocast(device, precision):
            yield
    finally:
        net_s.train(was_training)


def _as_crops(features: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """One video's features ``[T, D]`` or ``[C, T, D]`` as a float32 tensor ``[C, T, D]`` on ``device``."""
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features, dtype=np.float32))
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] < 1:
        raise AdplgError(f"expected one video's [T, D] or [crops, T, D] with T >= 1, got {list(x.shape)}",
                         parameter="features")
    return x.to(device=device, dtype=torch.float32)


def video_snippet_scores(net_s: nn.Module, features: np.ndarray | torch.Tensor, *,
                         batch_snippets: int = DEFAULT_BATCH_SNIPPETS, max_len: int | None = None,
                         smooth_window: int = 0, device: torch.device | str = "cpu",
                         precision: str = "fp32", smooth_mode: str = "centred") -> np.ndarray:
    """Snippet scores ``[T]`` (float32) of one video's ``features`` ``[T, D]`` or ``[C, T, D]`` (crops averaged):
    forward passes of at most ``batch_snippets`` crop-snippets, overlapping windows past ``max_len`` (default
    ``net_s.max_len``), then the ``smooth_mode`` moving average over ``smooth_window`` snippets (0 = off). See the
    module docstring."""
    with _scoring(net_s, device, precision):
        scores = forward_windowed(net_s, _as_crops(features, device), batch_snippets, max_len).mean(dim=0)
    return smooth_scores(scores.cpu().numpy(), smooth_window, smooth_mode)


def batched_snippet_scores(net_s: nn.Module, crops_of: Callable[[int], np.ndarray], lengths: Sequence[int],
                           crop_counts: Sequence[int], *, batch_snippets: int = DEFAULT_BATCH_SNIPPETS,
                           max_len: int | None = None, smooth_window: int = 0, device: torch.device | str = "cpu",
                           precision: str = "fp32", progress: bool = False,
                           smooth_mode: str = "centred") -> list[np.ndarray]:
    """Per video ``v``, the scores ``[T_v]`` of :func:`video_snippet_scores` over ``crops_of(v)`` ``[C_v, T_v, D]``
    (``lengths[v] = T_v``, ``crop_counts[v] = C_v``), with videos of equal length put through one forward of at most
    ``batch_snippets`` crop-snippets (:func:`length_batches`; a long video's crops are split when they exceed it).
    Scores stay on the device until the end."""
    from tqdm import tqdm

    batches = length_batches(list(lengths), list(crop_counts), batch_snippets)
    on_device: dict[int, torch.Tensor] = {}
    with _scoring(net_s, device, precision):
        for batch in tqdm(batches, desc="scoring", disable=not progress, leave=False):
            x = torch.from_numpy(np.concatenate([crops_of(v) for v in batch])).to(device)  # [sum C, T, D]
            scores = forward_windowed(net_s, x, batch_snippets, max_len)  # [sum C, T]
            for v, part in zip(batch, scores.split([crop_counts[v] for v in batch])):
                on_device[v] = part.mean(dim=0)  # [T]
    return [smooth_scores(on_device[v].cpu().numpy(), smooth_window, smooth_mode) for v in range(len(lengths))]
