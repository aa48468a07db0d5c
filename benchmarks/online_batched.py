"""The scores :class:`~adplg.live.online.OnlineScorer` emits, computed for many videos at once (the benchmark's
speed-up; ``adplg watch`` streams one video through the scorer itself).

Streaming a test set snippet by snippet costs one forward per snippet and video (R1: 56,800 per model and seed).
The same numbers come from batching the videos of one length and crop count:

* a bidirectional model emits snippet ``i`` from the forward over the buffer that ends at ``e = min(i + L, T - 1)``
  (``L`` the delay; the end of the stream flushes the rest from the last buffer) and starts at
  ``max(0, e - W + 1)``: one forward of every video's ``[s, e]`` slice per end ``e``;
* a causal model's score of snippet ``i`` is computed when it arrives, incrementally
  (:class:`~adplg.models.streaming.CausalStream`): every video's next snippet in one step.

Crops are averaged after the forward and the emitted scores smoothed by their trailing mean, as the scorer does.
:func:`check_against_streaming` compares with the real scorer on some videos (the benchmark reports the largest
difference).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from adplg.live.online import OnlineScorer
from adplg.models.apply import smooth_scores
from adplg.models.streaming import CausalStream


def _groups(test) -> dict[tuple[int, int], list[int]]:
    """Video indices grouped by ``(T, crops)``."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for v in range(len(test.videos)):
        c, t, _ = test.crops(v).shape
        groups[t, c].append(v)
    return groups


@torch.no_grad()
def batched_online_scores(scorer: OnlineScorer, test) -> list[np.ndarray]:
    """Per video, the snippet scores ``[T_v]`` that streaming it through a fresh copy of ``scorer`` (its model,
    window, delay, smoothing) emits."""
    model, device = scorer.model.eval(), scorer.device
    out: list[np.ndarray | None] = [None] * len(test.videos)
    for (length, crops), videos in _groups(test).items():
        x = torch.as_tensor(np.concatenate([test.crops(v) for v in videos]), dtype=torch.float32, device=device)
        raw = np.zeros((len(videos) * crops, length))  # [V * C, T]
        if scorer.causal:
            stream = CausalStream(model)
            for t in range(length):
                raw[:, t] = stream.step(x[:, t:t + 1]).float().cpu().numpy()[:, 0]
        else:
            delay, window = scorer.delay, scorer.window
            for end in range(length):
                emitted = range(end - delay, end - delay + 1) if end < length - 1 else range(end - delay, length)
                emitted = [i for i in emitted if i >= 0]
                if not emitted:
                    continue
                start = max(0, end - window + 1)
                scores = model(x[:, start:end + 1]).float().cpu().numpy()  # [V * C, end - start + 1]
                for i in emitted:
                    raw[:, i] = scores[:, i - start]
        per_video = raw.reshape(len(videos), crops, length).mean(axis=1)
        for v, scores in zip(videos, per_video):
            out[v] = smooth_scores(scores, scorer.smooth_window, "trailing")
    return [s for s in out if s is not None]


def online_scores(make_scorer: Callable[[], OnlineScorer], test, encode_every: int = 1,
                  videos: int | None = None) -> tuple[list[np.ndarray], int]:
    """Per video, the snippet scores [T_v] of streaming its crops ``[C, T, D]`` snippet by snippet through a fresh
    ``make_scorer()``, and the scorer's delay in snippets. With ``encode_every = k > 1`` snippet ``t`` gets the
    features of snippet ``t - t % k``, as ``adplg watch --encode-every k`` feeds the model when it runs the backbone
    on every k-th snippet only. ``videos``: the first ones only (default all)."""
    out, delay = [], 0
    for v in range(len(test.videos) if videos is None else min(videos, len(test.videos))):
        crops = test.crops(v)  # [C, T, D]
        scorer = make_scorer()
        delay = scorer.latency_snippets
        scores = np.zeros(crops.shape[1])
        emitted = 0
        for t in range(crops.shape[1]):
            for i, s in scorer.push(crops[:, t - t % encode_every]):
                scores[i] = s
                emitted += 1
        for i, s in scorer.flush():
            scores[i] = s
            emitted += 1
        assert emitted == crops.shape[1], (emitted, crops.shape)
        out.append(scores)
    return out, delay


def check_against_streaming(make_scorer: Callable[[], OnlineScorer], test, batched: list[np.ndarray],
                            videos: int) -> float:
    """The largest absolute difference between :func:`batched_online_scores` and the real scorer streaming the first
    ``videos`` test videos snippet by snippet (:func:`online_scores`)."""
    streamed, _ = online_scores(make_scorer, test, videos=videos)
    return max((float(np.max(np.abs(s - b))) for s, b in zip(streamed, batched)), default=0.0)
