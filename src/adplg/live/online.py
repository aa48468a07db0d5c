"""Online scoring: snippet scores while a video stream is still arriving (``adplg watch``).

:class:`OnlineScorer` keeps a ring buffer of the last ``window`` snippets' features and runs the snippet branch over
it each time a snippet arrives (:func:`~adplg.models.apply.video_snippet_scores`, as offline scoring does). Snippet
``i`` is *emitted* (its score becomes final) once snippet ``i + delay`` has arrived, scored with the buffer that ends
at ``i + delay``; :meth:`OnlineScorer.flush` emits the rest at the end of the stream, scored with the buffer that
ends at the last snippet.

How close this is to the offline score (the whole video in one forward pass):

* the local windows (``|i - j| <= w`` for ``w`` in the model's windows) and the ``k = 3`` embedding convolution see
  ``max(windows) + 1`` snippets ahead: with ``delay >= default_delay(model)`` every snippet's *local* context is
  complete when it is scored;
* the global transformer attends the whole sequence and the local blocks add learned *absolute* positional
  embeddings (row 0 at the first snippet of the forward pass). Online, the sequence is the buffer: it lacks the
  snippets after ``i + delay`` and, once more than ``window`` snippets have arrived, those before the buffer, whose
  first snippet then takes position 0. So scores differ from offline unless ``window >= T`` and every snippet is
  scored with the whole video in the buffer (``delay >= T - 1``, or a flush at the end).

Smoothing (``eval.smooth_window``, a *centred* moving average offline) is not applied unless ``smooth_window > 0`` is
given; then each emitted score is the *trailing* mean of the last ``smooth_window`` raw scores (a causal
approximation, lagging the centred average by about ``(smooth_window - 1) / 2`` snippets, and adding no latency).

Turning the emitted scores into alerts as they arrive: :class:`adplg.inference.online_alerts.OnlineAlerts`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

from adplg.errors import AdplgError
from adplg.models.apply import video_snippet_scores

__all__ = ["OnlineScorer", "default_delay", "model_windows"]


def model_windows(model: nn.Module) -> tuple[int, ...]:
    """The local-attention half-windows of a snippet branch (or of every member of an ensemble), read from the
    model's :class:`~adplg.models.local_attention.LocalWindowTransformer` blocks, else its ``windows`` attribute."""
    from adplg.models.local_attention import LocalWindowTransformer

    windows = [int(m.window) for m in model.modules() if isinstance(m, LocalWindowTransformer)]
    if not windows:
        for m in model.modules():  # e.g. a scripted model keeps the plain attribute
            found = getattr(m, "windows", None)
            if found:
                windows.extend(int(w) for w in found)
    if not windows:
        raise AdplgError(f"cannot find the local-attention windows of {type(model).__name__}; pass delay= explicitly")
    return tuple(sorted(set(windows)))


def _conv_reach(model: nn.Module) -> int:
    """Look-ahead of the temporal embedding convolution(s): ``(kernel - 1) // 2`` (1 for the ``k = 3`` conv)."""
    from adplg.models.snippet_branch import TemporalConvEmbedding

    reach = [(m.conv.kernel_size[0] - 1) // 2 for m in model.modules() if isinstance(m, TemporalConvEmbedding)]
    return max(reach) if reach else 1


def default_delay(model: nn.Module) -> int:
    """Snippets of look-ahead the snippet branch needs for a score to stop changing from its local context:
    ``max(windows) + 1`` (the ``k = 3`` embedding convolution reaches one snippet further). Read from the model."""
    return max(model_windows(model)) + _conv_reach(model)


class OnlineScorer:
    """Scores a stream of snippet features as they arrive, over a ring buffer of the last ``window`` snippets.

    ``push(features)`` takes one snippet's features, ``[D]`` or ``[crops, D]`` (crop scores are averaged after the
    forward pass, as offline), and returns the ``(snippet_index, score)`` pairs that became final: snippet ``i`` is
    emitted once snippet ``i + delay`` has arrived. ``flush()`` emits the rest at the end of the stream.

    ``delay`` defaults to :func:`default_delay`; it is capped at ``window - 1`` (a snippet must still be in the
    buffer when it is scored), and :attr:`delay` is the value in use. ``window`` may not exceed the model's
    ``max_len``. The model is put in eval mode on ``device``; scoring runs under ``torch.no_grad`` and the
    ``precision`` of :func:`adplg.precision.autocast`. One forward pass of at most ``window`` snippets per push.
    ``smooth_window > 0``: emitted scores are the trailing mean of the last ``smooth_window`` raw scores (see the
    module docstring).
    """

    def __init__(self, model: nn.Module, window: int = 256, delay: int | None = None,
                 device: torch.device | str = "cpu", precision: str = "fp32", smooth_window: int = 0):
        window = int(window)
        max_len = getattr(model, "max_len", None)
        if window < 1:
            raise AdplgError(f"online scoring: expected window >= 1 snippet, got {window}")
        if max_len is not None and window > int(max_len):
            raise AdplgError(f"online scoring: window {window} exceeds the model's max_len {int(max_len)} (its "
                             f"positional embedding rows)")
        requested = default_delay(model) if delay is None else int(delay)
        if requested < 0:
            raise AdplgError(f"online scoring: expected delay >= 0 snippets, got {requested}")
        if int(smooth_window) < 0:
            raise AdplgError(f"online scoring: expected smooth_window >= 0, got {smooth_window}")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.window = window
        self.requested_delay = requested
        self._delay = min(requested, window - 1)
        self.smooth_window = int(smooth_window)
        self._recent: deque[float] = deque(maxlen=max(self.smooth_window, 1))
        self._buffer: torch.Tensor | None = None  # [crops, 2 * window, D]: each snippet written twice (see _view)
        self._seen = 0  # snippets pushed
        self._next = 0  # first snippet not yet emitted

    @property
    def delay(self) -> int:
        """Snippets of look-ahead in use (``min(requested delay, window - 1)``)."""
        return self._delay

    @property
    def latency_snippets(self) -> int:
        """Snippets a score waits for before it is final (the look-ahead :attr:`delay`)."""
        return self._delay

    @property
    def snippets_seen(self) -> int:
        """The number of snippets pushed so far."""
        return self._seen

    def _store(self, features: np.ndarray) -> None:
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise AdplgError(f"online scoring: expected one snippet's features [D] or [crops, D], got shape "
                             f"{list(x.shape)}")
        if self._buffer is None:
            self._buffer = torch.zeros(x.shape[0], 2 * self.window, x.shape[1], device=self.device)
        elif tuple(x.shape) != (self._buffer.shape[0], self._buffer.shape[2]):
            raise AdplgError(f"online scoring: snippet {self._seen} has shape {list(x.shape)}, but the stream started "
                             f"with [{self._buffer.shape[0]}, {self._buffer.shape[2]}] (crops, D)")
        slot = self._seen % self.window
        x = x.to(self.device)
        self._buffer[:, slot] = x  # written twice, so the last `window` snippets are always one contiguous slice
        self._buffer[:, slot + self.window] = x
        self._seen += 1

    def _view(self) -> tuple[torch.Tensor, int]:
        """The buffered snippets, oldest first, ``[crops, L, D]``, and the stream index of the first one."""
        assert self._buffer is not None  # allocated by the first _store
        newest = self._seen - 1
        length = min(self._seen, self.window)
        end = newest % self.window + self.window + 1
        return self._buffer[:, end - length:end], newest - length + 1

    def _scores(self) -> tuple[np.ndarray, int]:
        """Scores ``[L]`` (float64) of the buffered snippets, crops averaged, and the stream index of the first."""
        view, first = self._view()
        scores = video_snippet_scores(self.model, view, device=self.device, precision=self.precision)  # [L]
        return scores.astype(np.float64), first

    def _emit(self, upto: int) -> list[tuple[int, float]]:
        """Emit snippets ``self._next .. upto`` (inclusive) from one forward pass over the current buffer."""
        if upto < self._next:
            return []
        scores, first = self._scores()
        out = []
        for i in range(self._next, upto + 1):
            score = float(scores[i - first])
            if self.smooth_window > 0:
                self._recent.append(score)
                score = float(sum(self._recent) / len(self._recent))
            out.append((i, score))
        self._next = upto + 1
        return out

    def push(self, features: np.ndarray) -> list[tuple[int, float]]:
        """Add one snippet (``[D]`` or ``[crops, D]``); returns the ``(index, score)`` pairs that became final."""
        self._store(features)
        return self._emit(self._seen - 1 - self._delay)

    def flush(self) -> list[tuple[int, float]]:
        """End of stream: emit every snippet not yet emitted (scored with the buffer ending at the last snippet)."""
        if self._seen == 0:
            return []
        return self._emit(self._seen - 1)
