"""Online scoring: snippet scores while a video stream is still arriving (``adplg watch``).

:class:`OnlineScorer` keeps a ring buffer of the last ``window`` snippets' features and runs the snippet branch over
it as snippets arrive (:func:`~adplg.models.apply.video_snippet_scores`, as offline scoring does). Snippet ``i`` is
*emitted* (its score becomes final) once snippet ``i + delay`` has arrived; :meth:`OnlineScorer.flush` emits the rest
at the end of the stream.

**Causal models** (``model.causal``, :func:`~adplg.models.snippet_branch.is_causal`): a score depends only on the
last ``R = receptive_field(model)`` snippets (:func:`~adplg.models.snippet_branch.receptive_field`), so the online
score of every snippet *equals* its offline score (the whole video in one forward pass) up to float rounding, at
any stream length and any chunking. The delay defaults to 0 (each push emits the new snippet). No ring buffer is
run through the model: :class:`~adplg.models.streaming.CausalStream` keeps the state the next scores need (the
layers' cached keys and values over the receptive field) and scores each snippet once, when it arrives, at the cost
of a few tokens per layer rather than a forward pass over ``R + 1`` snippets; :meth:`OnlineScorer.push_many` scores a
chunk in one step. ``window`` is then ``R + 1`` whatever is asked (each score sees exactly that context;
:attr:`OnlineScorer.requested_window` keeps the value asked for), and a positive ``delay`` only holds the scores back.

**Bidirectional models** (the faithful default): snippet ``i`` is scored with the buffer that ends at ``i + delay``
(the flush: with the buffer ending at the last snippet). How close this is to the offline score:

* the local windows (``|i - j| <= w`` for ``w`` in the model's windows) and the ``k = 3`` embedding convolution see
  ``max(windows) + 1`` snippets ahead: with ``delay >= default_delay(model)`` every snippet's *local* context is
  complete when it is scored;
* the global transformer attends the whole sequence and the local blocks add learned *absolute* positional
  embeddings (row 0 at the first snippet of the forward pass). Online, the sequence is the buffer: it lacks the
  snippets after ``i + delay`` and, once more than ``window`` snippets have arrived, those before the buffer, whose
  first snippet then takes position 0. So scores differ from offline unless ``window >= T`` and every snippet is
  scored with the whole video in the buffer (``delay >= T - 1``, or a flush at the end).

Smoothing: ``smooth_window > 1`` makes each emitted score the *trailing* mean of the last ``smooth_window`` raw
scores, computed by the offline :func:`~adplg.models.apply.smooth_scores` in ``trailing`` mode (``eval.smooth_mode``
trailing: offline equals online; ``centred``, the default, lags it by about ``(smooth_window - 1) / 2`` snippets).

Turning the emitted scores into alerts as they arrive: :class:`adplg.inference.online_alerts.OnlineAlerts`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

from adplg.errors import AdplgError
from adplg.models.apply import smooth_scores, video_snippet_scores
from adplg.models.snippet_branch import is_causal, receptive_field
from adplg.models.streaming import CausalStream
from adplg.precision import autocast

__all__ = ["DEFAULT_WINDOW", "OnlineScorer", "default_delay", "model_windows"]

DEFAULT_WINDOW = 256  # snippets buffered for a bidirectional model unless the caller says otherwise


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
    ``max(windows) + 1`` (the ``k = 3`` embedding convolution reaches one snippet further); 0 for a causal model,
    whose score never changes once its snippet has arrived. Read from the model."""
    if is_causal(model):
        return 0
    return max(model_windows(model)) + _conv_reach(model)


class OnlineScorer:
    """Scores a stream of snippet features as they arrive: a bidirectional model over a ring buffer of the last
    ``window`` snippets, a causal model incrementally.

    ``push(features)`` takes one snippet's features, ``[D]`` or ``[crops, D]`` (crop scores are averaged after the
    forward pass, as offline), and returns the ``(snippet_index, score)`` pairs that became final: snippet ``i`` is
    emitted once snippet ``i + delay`` has arrived. ``push_many`` takes a chunk ``[N, D]`` or ``[N, crops, D]``;
    ``flush()`` emits the rest at the end of the stream.

    A causal model (see the module docstring): ``delay`` defaults to 0, ``window`` is ``receptive_field + 1``, and
    every emitted score equals the offline one; each push is one incremental step (no ring buffer). A bidirectional
    model: ``window`` defaults to :data:`DEFAULT_WINDOW` and may not exceed the model's ``max_len``; ``delay``
    defaults to :func:`default_delay` and is capped at ``window - 1`` (a snippet must still be in the buffer when it
    is scored); one forward of at most ``window`` snippets per snippet pushed. :attr:`delay` and :attr:`window` are
    the values in use. The model is put in eval mode on ``device``; scoring runs under ``torch.no_grad`` and the
    ``precision`` of :func:`adplg.precision.autocast`. ``smooth_window > 1``: emitted scores are the trailing mean of
    the last ``smooth_window`` raw scores (see the module docstring).
    """

    def __init__(self, model: nn.Module, window: int | None = None, delay: int | None = None,
                 device: torch.device | str = "cpu", precision: str = "fp32", smooth_window: int = 0):
        self.requested_window = None if window is None else int(window)
        if self.requested_window is not None and self.requested_window < 1:
            raise AdplgError(f"online scoring: expected window >= 1 snippet, got {window}", parameter="window")
        self.causal = is_causal(model)
        self.receptive_field: int | None = receptive_field(model) if self.causal else None
        if self.receptive_field is not None:  # a causal score sees exactly its R past snippets and itself
            window = self.receptive_field + 1
        else:
            window = DEFAULT_WINDOW if self.requested_window is None else self.requested_window
            max_len = getattr(model, "max_len", None)
            if max_len is not None and window > int(max_len):
                raise AdplgError(f"online scoring: window {window} exceeds the model's max_len {int(max_len)} (its "
                                 f"positional embedding rows)", parameter="window")
        if delay is None:
            requested = default_delay(model)
        else:
            requested = int(delay)
        if requested < 0:
            raise AdplgError(f"online scoring: expected delay >= 0 snippets, got {requested}", parameter="delay")
        if int(smooth_window) < 0:
            raise AdplgError(f"online scoring: expected smooth_window >= 0, got {smooth_window}",
                             parameter="smooth_window")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device).eval()
        self._stream = CausalStream(self.model) if self.causal else None
        self.window = int(window)
        self.requested_delay = requested
        # a causal score is made on arrival and only held back, so it needs no look-ahead
        self._delay = requested if self.causal else min(requested, self.window - 1)
        self.smooth_window = int(smooth_window)
        self._recent: deque[float] = deque(maxlen=max(self.smooth_window, 1))
        self._held: deque[tuple[int, float]] = deque()  # causal: raw scores made, not yet emitted (delay > 0)
        self._buffer: torch.Tensor | None = None  # [crops, 2 * window, D]: each snippet written twice (see _view)
        self._crops_dim: tuple[int, int] | None = None  # the stream's (crops, D), from its first snippet
        self._seen = 0  # snippets pushed
        self._next = 0  # first snippet not yet emitted

    @property
    def delay(self) -> int:
        """Snippets of look-ahead in use (a bidirectional model: ``min(requested delay, window - 1)``)."""
        return self._delay

    @property
    def latency_snippets(self) -> int:
        """Snippets a score waits for before it is final (the look-ahead :attr:`delay`)."""
        return self._delay

    @property
    def snippets_seen(self) -> int:
        """The number of snippets pushed so far."""
        return self._seen

    def causal_note(self, smooth_mode: str = "trailing") -> str | None:
        """The start-up line of ``adplg watch`` for a causal model (None for a bidirectional one): exact scores, the
        delay, the buffer; and, when ``eval.smooth_mode`` (``smooth_mode``) is not trailing, that smoothed scores
        differ from offline (live smoothing is always trailing)."""
        if self.receptive_field is None:
            return None
        ignored = "" if self.requested_window in (None, self.window) else f"; window {self.requested_window} ignored"
        note = (f"causal model: live scores equal offline scores, delay {self.delay} (each score from the last "
                f"{self.window} snippets: the receptive field {self.receptive_field} + 1, scored incrementally"
                f"{ignored})")
        if self.smooth_window > 1 and smooth_mode != "trailing":
            note += (f"; smoothing differs: trailing over {self.smooth_window} live, eval.smooth_mode {smooth_mode} "
                     f"offline (the causal presets smooth trailing)")
        return note

    def _as_snippets(self, features: np.ndarray, chunk: bool) -> torch.Tensor:
        """``features`` as ``[crops, N, D]`` on the device: one snippet ``[D]`` / ``[crops, D]`` (N = 1), or
        (``chunk``) ``[N, D]`` / ``[N, crops, D]``; the crops and ``D`` must be those of the stream's first snippet."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        what = "a chunk of snippets' features [N, D] or [N, crops, D]" if chunk else \
            "one snippet's features [D] or [crops, D]"
        if x.dim() != (2 if chunk else 1) and x.dim() != (3 if chunk else 2):
            raise AdplgError(f"online scoring: expected {what}, got shape {list(x.shape)}", parameter="features")
        if not chunk:
            x = x[None]
        if x.dim() == 2:
            x = x[:, None]
        x = x.transpose(0, 1).to(self.device)  # [crops, N, D]
        if self._crops_dim is not None and (x.shape[0], x.shape[2]) != self._crops_dim:
            raise AdplgError(f"online scoring: snippet {self._seen} has {x.shape[0]} crops of {x.shape[2]} features, "
                             f"but the stream started with [{self._crops_dim[0]}, {self._crops_dim[1]}] (crops, D)",
                             parameter="features")
        return x

    def _store(self, x: torch.Tensor) -> None:
        """Append the snippets ``x [crops, N, D]`` to the ring buffer."""
        if self._buffer is None:
            self._buffer = torch.zeros(x.shape[0], 2 * self.window, x.shape[2], device=self.device)
            self._crops_dim = (x.shape[0], x.shape[2])
        for n in range(x.shape[1]):
            slot = self._seen % self.window
            self._buffer[:, slot] = x[:, n]  # written twice, so the last `window` snippets are one contiguous slice
            self._buffer[:, slot + self.window] = x[:, n]
            self._seen += 1

    def _view(self) -> tuple[torch.Tensor, int]:
        """The buffered snippets, oldest first, ``[crops, L, D]``, and the stream index of the first one."""
        assert self._buffer is not None  # allocated by the first _store
        newest = self._seen - 1
        length = min(self._seen, self.window)
        end = newest % self.window + self.window + 1
        return self._buffer[:, end - length:end], newest - length + 1

    def _final(self, raw: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """The emitted ``(index, score)`` pairs of raw scores in stream order: trailing-smoothed when asked."""
        if self.smooth_window <= 1:
            return raw
        out = []
        for i, score in raw:
            self._recent.append(score)
            out.append((i, float(smooth_scores(np.asarray(self._recent), self.smooth_window, "trailing")[-1])))
        return out

    def _emit(self, upto: int) -> list[tuple[int, float]]:
        """Emit snippets ``self._next .. upto`` (inclusive): a causal model's held scores; a bidirectional model's
        from one forward pass over the current buffer."""
        if upto < self._next:
            return []
        if self.causal:
            raw = []
            while self._held and self._held[0][0] <= upto:
                raw.append(self._held.popleft())
        else:
            view, first = self._view()  # one forward over the buffer, crops averaged
            scores = video_snippet_scores(self.model, view, device=self.device, precision=self.precision)
            raw = [(i, float(scores[i - first])) for i in range(self._next, upto + 1)]
        self._next = upto + 1
        return self._final(raw)

    def _push_causal(self, x: torch.Tensor) -> None:
        """Score the new snippets ``x [crops, N, D]`` in one incremental step (crops averaged) and hold the scores."""
        assert self._stream is not None  # a causal model
        if self._crops_dim is None:
            self._crops_dim = (x.shape[0], x.shape[2])
        with torch.no_grad(), autocast(self.device, self.precision):
            scores = self._stream.step(x).float().mean(dim=0).cpu().numpy().astype(np.float64)  # [N]
        self._held.extend((self._seen + n, float(s)) for n, s in enumerate(scores))
        self._seen += x.shape[1]

    def push(self, features: np.ndarray) -> list[tuple[int, float]]:
        """Add one snippet (``[D]`` or ``[crops, D]``); returns the ``(index, score)`` pairs that became final."""
        x = self._as_snippets(features, chunk=False)
        if self.causal:
            self._push_causal(x)
        else:
            self._store(x)
        return self._emit(self._seen - 1 - self._delay)

    def push_many(self, features: np.ndarray) -> list[tuple[int, float]]:
        """Add a chunk of snippets (``[N, D]`` or ``[N, crops, D]``, oldest first); returns the ``(index, score)``
        pairs that became final. The same pairs as ``N`` calls of :meth:`push`: a causal model scores the chunk in
        steps of up to ``window`` snippets each, a bidirectional model one push at a time."""
        x = self._as_snippets(features, chunk=True)
        if not self.causal:
            out = []
            for n in range(x.shape[1]):
                self._store(x[:, n:n + 1])
                out += self._emit(self._seen - 1 - self._delay)
            return out
        for piece in x.split(self.window, dim=1):
            self._push_causal(piece)
        return self._emit(self._seen - 1 - self._delay)

    def flush(self) -> list[tuple[int, float]]:
        """End of stream: emit every snippet not yet emitted (a bidirectional model's scored with the buffer ending
        at the last snippet)."""
        if self._seen == 0:
            return []
        return self._emit(self._seen - 1)
