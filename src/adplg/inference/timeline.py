"""One video's score timeline: snippet scores laid out on its frames, with frame times, alerts and the CSV, JSON and
PNG outputs of ``adplg score``.

Snippet scores become frame scores by the config's snippet layout (``data.layout``, exactly as ``adplg test``
evaluates): ``uniform`` repeats a snippet's score over its ``frames_per_snippet`` frames; ``spread`` interpolates over
the video's frame count. :func:`build_timeline` is the one builder, used by ``adplg score`` (feature files) and
``adplg watch`` (a stream, once it has ended).

Times (``time_source``, worded as in the extraction record, :mod:`adplg.data.extraction`): with a ``uniform`` layout,
every frame's presentation time from the container when the extraction record has them (``frame_pts``: "pts"; a
variable-frame-rate video or one with undecodable frames keeps its real clock, frame by frame); with only the
snippets' times (an older record, or the frames ``adplg watch`` read) frames are spaced evenly within each snippet
("pts per snippet, ..."); otherwise frame ``i`` is at ``i / fps`` ("frame index"), with the recorded or given rate,
else :data:`ASSUMED_FPS`. Alert durations and gaps are measured on that clock.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adplg.alert_rules import AlertRules, Segment, alert_mask, alert_segments, check_number, dropped_runs
from adplg.data.extraction import TIME_FROM_FRAME_INDEX, TIME_FROM_PTS, TIME_FROM_SNIPPET_PTS
from adplg.data.gt import SnippetLayout, annotation_key
from adplg.errors import AdplgError

ASSUMED_FPS = 30.0  # the frame rate of a video that declares none and was given none


def check_fps(fps: float | None) -> None:
    """A caller's frame rate (``fps=`` / ``--fps``): None, or a finite number > 0."""
    if fps is not None:
        check_number("score", "fps", fps, low=0, low_open=True)


@dataclass(kw_only=True)
class Timeline:
    """One video's scores: ``snippet_scores [T]``, and per frame ``frame_scores [F]`` at ``times_s [F]`` seconds.

    ``layout`` maps snippets to frames (``F = T * frames_per_snippet`` for ``uniform``; ``video_frames`` for
    ``spread``). ``snippet_start_s`` / ``snippet_end_s`` ``[T]`` are the snippets' presentation times from the
    container when they are known, and ``frame_start_s`` ``[F]`` every frame's (else None; see the module
    docstring). ``features``: the feature files scored (none for a stream). Build one with :func:`build_timeline`."""

    name: str
    snippet_scores: np.ndarray
    fps: float
    fps_source: str
    features: list[str] = field(default_factory=list)
    layout: SnippetLayout = field(default_factory=SnippetLayout)
    video_frames: int | None = None
    snippet_start_s: np.ndarray | None = None
    snippet_end_s: np.ndarray | None = None
    frame_start_s: np.ndarray | None = None

    @property
    def snippet_frames(self) -> int:
        """Frames per snippet (the layout's)."""
        return self.layout.frames_per_snippet

    @property
    def frame_scores(self) -> np.ndarray:
        """``[F]`` per-frame scores: each snippet's score over its frames by the layout (F: ``video_frames`` if set)."""
        return self.layout.expand(self.snippet_scores, self.video_frames)

    @property
    def has_clock(self) -> bool:
        """True when frame times come from the container (not ``i / fps``)."""
        return self.snippet_start_s is not None and self.layout.kind == "uniform"

    @property
    def times_s(self) -> np.ndarray:
        """Start time of every frame of ``frame_scores`` ``[F]`` (see the module docstring)."""
        if self.has_clock and self.frame_start_s is not None:
            return np.asarray(self.frame_start_s, np.float64)
        if self.has_clock:
            k = self.snippet_frames
            start, end = np.asarray(self.snippet_start_s, np.float64), np.asarray(self.snippet_end_s, np.float64)
            return (start[:, None] + (end - start)[:, None] * (np.arange(k) / k)[None, :]).reshape(-1)
        return np.arange(len(self.frame_scores)) / self.fps

    @property
    def time_source(self) -> str:
        """Where ``times_s`` come from, in the extraction record's words (:data:`TIME_FROM_PTS`, ...)."""
        if self.has_clock:
            return TIME_FROM_PTS if self.frame_start_s is not None else TIME_FROM_SNIPPET_PTS
        return TIME_FROM_FRAME_INDEX

    @property
    def duration_s(self) -> float:
        """From the first frame's start to the last frame's end."""
        if self.has_clock and self.snippet_end_s is not None and len(self.snippet_end_s):
            return float(self.snippet_end_s[-1])
        return len(self.frame_scores) / self.fps

    @property
    def measured_fps(self) -> float:
        """Frames over duration: the real frame rate, which differs from ``fps`` (the container's nominal one) for a
        variable-frame-rate video or one whose container counts frames that never decode."""
        return len(self.frame_scores) / self.duration_s if self.duration_s > 0 else self.fps

    @property
    def clock_edges_s(self) -> np.ndarray | None:
        """``[F + 1]`` seconds, each frame's start then the end of the last frame, when the container gave the times;
        None when frame ``i`` is at ``i / fps`` (alerts then count frames at ``fps``)."""
        return np.append(self.times_s, self.duration_s) if self.has_clock else None

    def alerts(self, rules: AlertRules) -> tuple[np.ndarray, list[Segment]]:
        """``(alerted [F] bool, segments)`` under ``rules``, durations and times on this timeline's clock."""
        frames, edges = self.frame_scores, self.clock_edges_s
        return alert_mask(frames, self.fps, rules, edges), alert_segments(frames, self.fps, rules, edges)

    def dropped_spans(self, rules: AlertRules) -> list[tuple[float, float]]:
        """``[(start_s, end_s), ...]``: spans that reached ``rules.on_threshold`` but raised no alert, being shorter
        than ``rules.min_duration_s``."""
        edges = np.append(self.times_s, self.duration_s)
        return [(float(edges[a]), float(edges[b]))
                for a, b in dropped_runs(self.frame_scores, self.fps, rules, self.clock_edges_s)]

    def save(self, out_dir: Path, rules: AlertRules, gt_spans_s: list[tuple[float, float]] | None = None,
             plot: bool = True) -> dict:
        """Write ``<name>.csv``, ``<name>.json`` and ``<name>.png`` into ``out_dir`` (see :func:`write_timeline`)."""
        return write_timeline(out_dir, self, rules, gt_spans_s, plot)


def build_timeline(name: str, snippet_scores: np.ndarray | Sequence[float], *, layout: SnippetLayout, fps: float,
                   fps_source: str, video_frames: int | None = None, snippet_start_s: np.ndarray | None = None,
                   snippet_end_s: np.ndarray | None = None, frame_start_s: np.ndarray | None = None,
                   clock_snippet_frames: int | None = None, features: Sequence[str] = ()) -> Timeline:
    """The :class:`Timeline` of video ``name``'s ``snippet_scores [T]`` under ``layout`` (see the module docstring).

    ``fps`` (> 0) and ``fps_source`` (where it came from, e.g. ``"extraction record"``) give frame ``i`` its time
    ``i / fps``. ``spread`` needs ``video_frames``, the video's frame count. ``snippet_start_s`` / ``snippet_end_s``
    ``[T]``: the snippets' presentation times, and ``frame_start_s`` ``[>= T * frames_per_snippet]`` every decoded
    frame's (those after the last complete snippet are left out), used by a ``uniform`` layout whose
    ``frames_per_snippet`` equals ``clock_snippet_frames`` (the frames per snippet of the extraction that timed
    them; None: the layout's); snippets of another length are not the layout's, and their frames fall back to
    ``i / fps``."""
    scores = np.asarray(snippet_scores)
    if scores.ndim != 1:
        raise AdplgError(f"{name}: expected snippet scores of shape [T], got {list(scores.shape)}")
    if not (isinstance(fps, numbers.Real) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
        raise AdplgError(f"{name}: expected a frame rate fps > 0, a finite number, got {fps!r}")
    if layout.kind == "spread" and not video_frames:
        raise AdplgError(f"{name}: the 'spread' snippet layout needs the video's frame count (video_frames), got "
                         f"{video_frames!r}")
    if (snippet_start_s is None) != (snippet_end_s is None):
        raise AdplgError(f"{name}: expected both snippet start and end times or neither, got only "
                         f"{'start' if snippet_end_s is None else 'end'} times")
    if snippet_start_s is not None:
        snippet_start_s = np.asarray(snippet_start_s, np.float64)
        snippet_end_s = np.asarray(snippet_end_s, np.float64)
        if snippet_start_s.shape != scores.shape or snippet_end_s.shape != scores.shape:
            raise AdplgError(f"{name}: expected {len(scores)} snippet start and end times, got "
                             f"{snippet_start_s.size} and {snippet_end_s.size}")
        clock_snippet_frames = layout.frames_per_snippet if clock_snippet_frames is None else clock_snippet_frames
        if layout.kind == "uniform" and layout.frames_per_snippet != clock_snippet_frames:
            snippet_start_s = snippet_end_s = None  # the clock's snippets are not the layout's: use the frame rate
    if frame_start_s is not None and snippet_start_s is not None and layout.kind == "uniform":
        covered = len(scores) * layout.frames_per_snippet
        frame_start_s = np.asarray(frame_start_s, np.float64).reshape(-1)
        if len(frame_start_s) < covered:
            raise AdplgError(f"{name}: expected at least {covered} frame times ({len(scores)} snippets of "
                             f"{layout.frames_per_snippet} frames), got {len(frame_start_s)}")
        frame_start_s = frame_start_s[:covered]
    else:
        frame_start_s = None
    return Timeline(name=name, snippet_scores=scores, fps=float(fps), fps_source=fps_source, features=list(features),
                    layout=layout, video_frames=None if video_frames is None else int(video_frames),
                    snippet_start_s=snippet_start_s, snippet_end_s=snippet_end_s, frame_start_s=frame_start_s)


# ------------------------------------------------------------------------------------------------------ outputs
def annotated_spans(annotations: dict[str, list[tuple[int, int]]] | None, name: str,
                    fps: float) -> list[tuple[float, float]] | None:
    """The annotated ``[start, end)`` frame intervals of ``name`` in seconds (None without annotations)."""
    if annotations is None:
        return None
    return [(s / fps, e / fps) for s, e in annotations.get(annotation_key(name), [])]


# the keys of a video's summary (what write_timeline returns; its <name>.json starts with them)
TIMELINE_SUMMARY_KEYS = ("video", "fps", "fps_source", "measured_fps", "snippets", "frames", "duration_s",
                         "time_source", "max_score", "alert_seconds", "segments")


def write_timeline(out_dir: Path, timeline: Timeline, rules: AlertRules,
                   gt_spans_s: list[tuple[float, float]] | None = None, plot: bool = True,
                   extra: dict | None = None) -> dict:
    """``<name>.csv`` (frame, time_s, score, alert), ``<name>.json`` (the same arrays, segments, rules,
    ``dropped_spans``: ``[[start_s, end_s], ...]`` above the on threshold but shorter than the minimum duration, and
    the ``extra`` keys) and ``<name>.png``; returns the video's summary (``TIMELINE_SUMMARY_KEYS``)."""
    from adplg.evaluation.plots import plot_timeline
    from adplg.io import atomic_write_text

    out_dir = Path(out_dir)
    frames, times = timeline.frame_scores, timeline.times_s
    alerted, segments = timeline.alerts(rules)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time_s", "score", "alert"])
    writer.writerows((i, f"{t:.4f}", f"{s:.6f}", int(a)) for i, (t, s, a) in enumerate(zip(times, frames, alerted,
                                                                                            strict=True)))
    atomic_write_text(out_dir / f"{timeline.name}.csv", buffer.getvalue())

    summary = {"video": timeline.name, "fps": timeline.fps, "fps_source": timeline.fps_source,
               "measured_fps": round(timeline.measured_fps, 4), "snippets": len(timeline.snippet_scores),
               "frames": len(frames),
               "duration_s": timeline.duration_s, "time_source": timeline.time_source,
               "max_score": float(frames.max(initial=0.0)),
               "alert_seconds": float(sum(g.duration_s for g in segments)),
               "segments": [g.to_dict() for g in segments]}
    payload = {**summary, "snippet_frames": timeline.snippet_frames, "features": timeline.features,
               "alert_rules": rules.to_dict(), "time_s": np.round(times, 4).tolist(),
               "score": np.round(frames.astype(np.float64), 6).tolist(), "alert": alerted.astype(int).tolist(),
               "dropped_spans": [[round(a, 4), round(b, 4)] for a, b in timeline.dropped_spans(rules)],
               **(extra or {})}
    atomic_write_text(out_dir / f"{timeline.name}.json", json.dumps(payload))
    if plot:
        assert rules.off_threshold is not None  # AlertRules.__post_init__ sets it
        plot_timeline(out_dir / f"{timeline.name}.png", timeline.name, times, frames,
                      [(s.start_s, s.end_s) for s in segments], rules.on_threshold, rules.off_threshold, gt_spans_s)
    return summary
