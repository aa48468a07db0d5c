"""Frame-level ground truth: annotation readers, snippet-to-frame layouts, GT building and length checks
(METHOD §4.4, §5, §9; BENCHMARKS R1).

The frame GT of a test split is one 0/1 value per frame, concatenated over the test videos in list order. Every
video's slice must have exactly as many frames as its snippet scores expand to (``SnippetLayout``), otherwise AUC/AP
silently compare the wrong frames: ``load_gt_file`` and ``check_lengths`` refuse such mismatches.

The checks of a test split's GT against its list and feature lengths are in :mod:`adplg.data.gt_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from adplg.conventions import SNIPPET_FRAMES
from adplg.data.lists import line_problems_error, quote, read_text_lines
from adplg.data.npy_files import npy_failure_reason
from adplg.errors import AdplgError, DataValidationError

__all__ = [
    "SnippetLayout",
    "FrameGT",
    "annotation_key",
    "read_ucf_annotations",
    "read_ucf_frame_counts",
    "read_xd_annotations",
    "read_annotations",
    "build_frame_gt",
    "load_gt_file",
    "read_gt_array",
    "gt_length_problem",
    "gt_value_problem",
    "check_lengths",
]

_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".npy")


# ----------------------------------------------------------------------------------------------------------- layouts
@dataclass(frozen=True, kw_only=True)
class SnippetLayout:
    """How snippets map onto video frames.

    ``uniform``: snippet ``t`` covers frames ``[16t, 16t + 16)``; a video of T snippets has ``16 T`` GT frames and
    snippet scores are expanded with ``np.repeat`` (the official evaluation, METHOD §5).

    ``spread`` (BENCHMARKS R1): T snippets spread evenly over the F frames of the video; snippet ``i`` covers
    ``[s_i, s_i + window)`` with ``s_i = floor((F - window) * i / (T - 1))`` (``s_0 = 0`` when T = 1; ``F < window``
    gives ``s_i = 0``). The GT has F frames; frame scores are the linear interpolation of the snippet scores placed at
    the snippet centres ``s_i + window / 2``, clamped at both ends (``np.interp``).
    """

    kind: Literal["uniform", "spread"] = "uniform"
    frames_per_snippet: int = SNIPPET_FRAMES
    window: int = 54

    def __post_init__(self):
        if self.kind not in ("uniform", "spread"):
            raise AdplgError(f"unknown snippet layout {self.kind!r} (expected 'uniform' or 'spread')")
        if self.frames_per_snippet < 1 or self.window < 1:
            raise AdplgError(
                f"snippet layout: expected frames_per_snippet >= 1 and window >= 1, got "
                f"{self.frames_per_snippet} and {self.window}"
            )

    def _need_frames(self, video_frames) -> int:
        if video_frames is None:
            raise AdplgError("the 'spread' snippet layout needs the video's frame count (video_frames)")
        video_frames = int(video_frames)
        if video_frames < 1:
            raise AdplgError(f"snippet layout: expected a frame count >= 1, got {video_frames}")
        return video_frames

    def num_frames(self, num_snippets: int, video_frames: int | None = None) -> int:
        """GT frames of a video of ``num_snippets`` snippets (``spread``: the video's frame count itself)."""
        if self.kind == "uniform":
            return int(num_snippets) * self.frames_per_snippet
        return self._need_frames(video_frames)

    def snippet_starts(self, num_snippets: int, video_frames: int) -> np.ndarray:
        """``spread`` layout: first frame ``s_i`` of every snippet (int64)."""
        frames = self._need_frames(video_frames)
        t = int(num_snippets)
        if t < 1:
            raise AdplgError(f"snippet layout: expected at least one snippet, got {t}")
        span = max(frames - self.window, 0)
        if t == 1:
            return np.zeros(1, dtype=np.int64)
        return (span * np.arange(t, dtype=np.int64)) // (t - 1)

    def expand(self, scores: np.ndarray, video_frames: int | None = None) -> np.ndarray:
        """Snippet scores ``[T]`` -> frame scores ``[num_frames(T)]``."""
        scores = np.asarray(scores)
        if scores.ndim != 1:
            raise AdplgError(f"snippet layout: expected scores of shape [T], got {scores.shape}")
        if self.kind == "uniform":
            return np.repeat(scores, self.frames_per_snippet)
        frames = self._need_frames(video_frames)
        centres = self.snippet_starts(len(scores), frames) + self.window / 2.0
        out = np.interp(np.arange(frames, dtype=np.float64), centres, scores.astype(np.float64))
        return out.astype(scores.dtype) if np.issubdtype(scores.dtype, np.floating) else out


# ------------------------------------------------------------------------------------------------------ annotations
def annotation_key(name: str) -> str:
    """The video key of an annotation or list entry: folder and video extension removed
    (``'Arson/Arson022_x264.mp4'`` -> ``'Arson022_x264'``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for ext in _VIDEO_EXTENSIONS:
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def _annotation_lines(path) -> tuple[Path, list[tuple[int, list[str]]]]:
    path = Path(path)
    return path, [(n, line.split()) for n, line in read_text_lines(path, kind="annotation file")]


def _pairs(values: list[str], where: str, problems: list[str]) -> list[tuple[int, int]] | None:
    try:
        nums = [int(v) for v in values]
    except ValueError:
        problems.append(f"{where}: expected integer frame numbers, got {quote(' '.join(values))}")
        return None
    if len(nums) % 2:
        problems.append(f"{where}: expected start/end pairs (an even count of numbers), got {len(nums)}")
        return None
    out = []
    for s, e in zip(nums[0::2], nums[1::2]):
        if s == -1 or e == -1:
            continue
        if s < 0 or e < s:
            problems.append(f"{where}: expected 0 <= start <= end, got start {s}, end {e}")
            return None
        out.append((s, e))
    return out


def _is_int(tok: str) -> bool:
    try:
        int(tok)
        return True
    except ValueError:
        return False


def read_ucf_annotations(path) -> dict[str, list[tuple[int, int]]]:
    """UCF-Crime test annotations, either ``UCF_Annotation.txt`` (``Class/Name_x264.mp4 n Class s1 e1 s2 e2``) or
    Sultani's ``Temporal_Anomaly_Annotation.txt`` (``Name_x264.mp4 Class s1 e1 s2 e2``). Key ``'Name_x264'``;
    ``-1`` pairs are ignored (normal videos map to ``[]``). Frame numbers are returned as written."""
    def numbers(toks: list[str]) -> list[str] | None:
        if len(toks) < 2:
            return None
        nums = toks[3:] if _is_int(toks[1]) else toks[2:]
        return nums or None  # every line has its pairs, -1 -1 for a normal video (or it is no annotation line)

    return _read_intervals(path, numbers, "'<video> [frames] <class> s1 e1 ...'")


def read_ucf_frame_counts(path) -> dict[str, int]:
    """The frame-count column of ``UCF_Annotation.txt``-style files (``Class/Name_x264.mp4 n ...``)."""
    path, lines = _annotation_lines(path)
    out: dict[str, int] = {}
    problems: list[str] = []
    for lineno, toks in lines:
        if len(toks) < 2 or not _is_int(toks[1]):
            problems.append(f"annotation file {path}, line {lineno}: expected '<video> <frame count> ...', "
                            f"got {quote(' '.join(toks))}")
            continue
        out[annotation_key(toks[0])] = int(toks[1])
    if problems:
        raise line_problems_error(path, problems, len(problems), len(lines), kind="annotation file",
                                  expected="'<video> <frame count> ...' per line")
    return out


def read_xd_annotations(path) -> dict[str, list[tuple[int, int]]]:
    """XD-Violence test annotations (``XD_annotations.txt``: ``<name> s1 e1 [s2 e2 ...]``); key = the name without
    a video extension (14 lines of the official file carry ``.mp4``). Only violent videos are listed."""
    return _read_intervals(path, lambda toks: toks[1:], "'<name> s1 e1 [s2 e2 ...]'")


def read_annotations(path, fmt: str) -> dict[str, list[tuple[int, int]]]:
    """Anomaly intervals of an annotation file in ``fmt`` ``"ucf"`` (:func:`read_ucf_annotations`) or ``"xd"``
    (:func:`read_xd_annotations`)."""
    if fmt not in ("ucf", "xd"):
        raise AdplgError(f"annotation format: expected 'ucf' or 'xd', got {fmt!r}")
    return (read_ucf_annotations if fmt == "ucf" else read_xd_annotations)(path)


def _read_intervals(path, numbers, expected: str) -> dict[str, list[tuple[int, int]]]:
    """One ``video -> [(s, e), ...]`` entry per line; ``numbers(tokens)`` picks the frame-number tokens (None: the
    line is malformed). Every problem of the file is reported at once."""
    path, lines = _annotation_lines(path)
    out: dict[str, list[tuple[int, int]]] = {}
    problems: list[str] = []
    unreadable = 0  # lines that are no annotation line at all
    for lineno, toks in lines:
        where = f"annotation file {path}, line {lineno}"
        nums = numbers(toks)
        if nums is None:
            unreadable += 1
            problems.append(f"{where}: expected {expected}, got {quote(' '.join(toks))}")
            continue
        pairs = _pairs(nums, where, problems)
        if pairs is None:
            continue
        key = annotation_key(toks[0])
        if key in out:
            problems.append(f"{where}: video {key!r} annotated twice (expected one line per video)")
            continue
        out[key] = pairs
    if problems:
        raise line_problems_error(path, problems, unreadable, len(lines), kind="annotation file", expected=expected)
    return out


# ---------------------------------------------------------------------------------------------------------- frame GT
@dataclass(kw_only=True)
class FrameGT:
    """Concatenated frame labels of the test videos; video ``i`` is ``labels[offsets[i]:offsets[i+1]]``."""

    labels: np.ndarray
    offsets: np.ndarray
    videos: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Frames per video, int64."""
        return np.diff(self.offsets)

    @property
    def num_abnormal(self) -> int:
        """The number of abnormal (1) frames over all videos."""
        return int(np.count_nonzero(self.labels))

    def video(self, i: int) -> np.ndarray:
        """``[frames_i]`` uint8: the frame labels of video ``i``."""
        return self.labels[self.offsets[i]: self.offsets[i + 1]]

    def video_labels(self) -> np.ndarray:
        """1 for a video with any abnormal frame, else 0 (how the SHT test labels are derived), int64."""
        out = np.zeros(len(self.videos), dtype=np.int64)
        for i in range(len(self.videos)):
            out[i] = int(self.video(i).any())
        return out


def frame_offsets(lengths: Sequence[int]) -> np.ndarray:
    """``[V + 1]`` start of each video's frames in the concatenated GT of ``V`` videos; the last is the total."""
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    off[1:] = np.cumsum(np.asarray(lengths, dtype=np.int64))
    return off


def build_frame_gt(
    videos: Sequence[str],
    num_snippets: Sequence[int],
    intervals: Mapping[str, Sequence[tuple[int, int]]],
    layout: SnippetLayout = SnippetLayout(),
    video_frames: Sequence[int] | None = None,
    end_inclusive: bool = False,
    one_based: bool = False,
) -> FrameGT:
    """Per video: ``zeros(layout.num_frames(T_i, F_i))``, ones on ``[s, e)`` of every interval (``[s, e]`` with
    ``end_inclusive=True``, the RTFM/R1 convention), clipped to the video's length. ``one_based=True`` shifts
    1-based frame numbers (R1's ``index.csv``) to 0-based first. Intervals are looked up by the video name, then by
    ``annotation_key(name)``; a video without an entry is all normal."""
    videos = list(videos)
    if len(num_snippets) != len(videos):
        raise AdplgError(f"build_frame_gt: expected one snippet count per video ({len(videos)}), got "
                         f"{len(num_snippets)}")
    if video_frames is not None and len(video_frames) != len(videos):
        raise AdplgError(f"build_frame_gt: expected one frame count per video ({len(videos)}), got "
                         f"{len(video_frames)}")
    parts = []
    for i, name in enumerate(videos):
        frames = None if video_frames is None else int(video_frames[i])
        n = layout.num_frames(int(num_snippets[i]), frames)
        g = np.zeros(n, dtype=np.uint8)
        spans = intervals.get(name)
        if spans is None:
            spans = intervals.get(annotation_key(name), ())
        for s, e in spans:
            s, e = int(s), int(e)
            if one_based:
                s, e = s - 1, e - 1
            if end_inclusive:
                e += 1
            s, e = max(s, 0), min(e, n)
            if e > s:
                g[s:e] = 1
        parts.append(g)
    labels = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    return FrameGT(labels=labels, offsets=frame_offsets([len(p) for p in parts]), videos=videos)


def read_gt_array(path) -> np.ndarray:
    """Read a concatenated frame GT file as a 1-D array; ``AdplgError`` for a missing, unreadable or non-1-D file."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise AdplgError(f"GT file {path}: not found") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-data problem
        raise AdplgError(f"GT file {path}: cannot be read as a .npy array ({npy_failure_reason(path, exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        shape = getattr(arr, "shape", "an .npz archive")
        raise AdplgError(f"GT file {path}: expected a 1-D array of frame labels, got {shape}")
    return arr


def gt_length_problem(path, actual: int, videos: Sequence[str], expected_frames: Sequence[int]) -> str | None:
    """A message when a GT of ``actual`` frames does not cover ``sum(expected_frames)`` (one count per video, in
    list order), naming the video the file ends in or the frames left over; None when the lengths agree."""
    offsets = frame_offsets(expected_frames)
    total = int(offsets[-1])
    if actual == total:
        return None
    msg = (f"GT file {path}: length does not match the features: expected {total} frames "
           f"(sum over {len(videos)} videos), got {actual}")
    if actual < total:
        i = int(np.searchsorted(offsets[1:], actual, side="right"))
        return msg + (f"; the file ends inside video {videos[i]!r} (#{i}), whose slice would be "
                      f"[{offsets[i]}, {offsets[i + 1]})")
    return msg + f"; {actual - total} frames are left over after the last video {videos[-1]!r}"


def gt_value_problem(path, arr: np.ndarray) -> str | None:
    """A message when the GT holds values other than 0/1 (a few of them are named); None otherwise."""
    if arr.size == 0:
        return None
    binary = np.isin(arr, (0, 1))
    if binary.all():
        return None
    bad = np.unique(arr[~binary])[:5]
    return f"GT file {path}: expected 0/1 frame labels, got other values such as {bad.tolist()}"


def load_gt_file(path, videos: Sequence[str], expected_frames: Sequence[int]) -> FrameGT:
    """Load a concatenated official frame GT (``sh-gt.npy``, ``gt-ucf.npy``...) and check its length against
    ``sum(expected_frames)`` (one entry per video, in list order). Values must be 0/1; returned as uint8."""
    path = Path(path)
    videos = list(videos)
    if len(expected_frames) != len(videos):
        raise AdplgError(f"GT file {path}: expected one frame count per video ({len(videos)}), "
                         f"got {len(expected_frames)}")
    arr = read_gt_array(path)
    for problem in (gt_length_problem(path, int(arr.shape[0]), videos, expected_frames),
                    gt_value_problem(path, arr)):
        if problem is not None:
            raise AdplgError(problem)
    return FrameGT(labels=arr.astype(np.uint8), offsets=frame_offsets(expected_frames), videos=videos)


def check_lengths(gt: FrameGT, frame_counts: Sequence[int], source: str) -> None:
    """Refuse a GT whose per-video lengths differ from ``frame_counts`` (e.g. ``16 * T_i`` of the loaded features, or
    the frame-score lengths of a prediction). Every mismatching video is named with both lengths."""
    gl = gt.lengths
    if len(frame_counts) != len(gl):
        raise DataValidationError(
            [f"{source}: expected {len(gl)} videos (as in the GT), got {len(frame_counts)}"], context=source
        )
    problems = []
    for i, (g, f) in enumerate(zip(gl.tolist(), frame_counts)):
        if int(g) != int(f):
            name = gt.videos[i] if i < len(gt.videos) else f"#{i}"
            problems.append(f"{source}: video {name!r}: GT has {g} frames, expected {int(f)}")
    if problems:
        total = int(np.sum(np.asarray(frame_counts, dtype=np.int64)))
        problems.append(f"{source}: in total the GT has {len(gt)} frames, expected {total}")
        raise DataValidationError(problems, context=source)
