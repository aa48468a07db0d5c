"""The checks of a test split's frame-level ground truth against its list and feature lengths (METHOD §4.4, §9).

``check_test_gt`` is the one place where a test split's GT is checked and built: an abnormal video without
intervals, intervals beyond a video's end, annotated videos missing from the list, a GT file of the wrong length, a
GT without abnormal frames, ... ``build_test_set`` raises its errors and logs its warnings before anything is
scored, and ``adplg doctor`` reports the same problems.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from adplg.data.gt import (
    FrameGT,
    SnippetLayout,
    annotation_key,
    build_frame_gt,
    frame_offsets,
    gt_length_problem,
    gt_value_problem,
    read_annotations,
    read_gt_array,
    read_ucf_frame_counts,
)
from adplg.errors import AdplgError, DataValidationError

ERROR = "error"
WARNING = "warning"

GT_PROBLEM_KINDS: dict[str, str] = {
    "gt": "no frame-level ground truth configured",
    "gt_file": "GT file missing or unreadable",
    "gt_values": "GT file holds values other than 0/1",
    "gt_length": "GT file length does not match the features",
    "annotation": "annotation file missing or malformed",
    "unannotated": "abnormal videos without anomaly intervals",
    "label_conflict": "normal videos with anomaly intervals",
    "beyond_end": "annotation intervals beyond the video's end",
    "one_class": "GT without abnormal (or without normal) frames: frame AUC/AP undefined",
    "frame_count": "feature length disagrees with the annotated frame count",
    "not_in_list": "annotated videos missing from the list",
}
GT_WARNING_KINDS = frozenset({"frame_count", "not_in_list"})


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One finding of a data check (the GT checks here, every check of ``adplg doctor``): its kind (a
    ``GT_PROBLEM_KINDS`` / ``doctor.PROBLEM_KINDS`` key), its message (file or video, expected and actual value) and
    its severity (``error``: the data are unusable or the metrics wrong or undefined; ``warning``: deserves a look)."""

    kind: str
    message: str
    severity: str = ERROR


@dataclass(frozen=True, kw_only=True)
class GTVideo:
    """A test video as the GT checks see it: its name, list label (1 abnormal, 0 normal, -1 none: SHT lists), its
    snippet count T (None when no crop of it is readable) and its first crop file (named in the messages)."""

    name: str
    label: int
    snippets: int | None
    path: str = ""

    @property
    def where(self) -> str:
        """The video as messages name it: ``<crop file>: video 'name'`` (the name alone without a file)."""
        return f"{self.path}: video {self.name!r}" if self.path else f"video {self.name!r}"


class ProblemList:
    """``errors`` and ``warnings``: the ``problems`` of a check's result by severity (shared by the GT check and the
    doctor's reports)."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == WARNING]


@dataclass(kw_only=True)
class GTCheck(ProblemList):
    """What :func:`check_test_gt` found: the GT source, every problem, the rules applied and notes (checks that could
    not run), the GT's frame count and, when it could be built (every T known, the source readable, lengths
    right), the frame GT itself (built even when other errors were found, so callers must look at ``errors``)."""

    source: str | None = None
    source_kind: str = ""  # "GT file" or "annotation file"
    problems: list[Problem] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames: int | None = None
    gt: FrameGT | None = None

    def add(self, kind: str, message: str) -> None:
        """Record a problem of ``kind`` (a warning for ``GT_WARNING_KINDS``, else an error)."""
        self.problems.append(Problem(kind=kind, message=message,
                                     severity=WARNING if kind in GT_WARNING_KINDS else ERROR))

    def raise_errors(self) -> None:
        """One ``DataValidationError`` listing every error (nothing when there is none)."""
        if self.errors:
            raise DataValidationError([p.message for p in self.errors],
                                      context=f"test set ground truth ({self.source or 'not configured'}; "
                                              f"`adplg doctor` runs the same checks)")

    def warning_text(self, max_shown: int = 5) -> str | None:
        """The warnings as one text (the first ``max_shown`` of each kind), or None when there is none."""
        if not self.warnings:
            return None
        lines = [f"test set ground truth ({self.source}): {len(self.warnings)} warning(s)"]
        by_kind: dict[str, list[Problem]] = {}
        for problem in self.warnings:
            by_kind.setdefault(problem.kind, []).append(problem)
        for kind, group in by_kind.items():
            lines.append(f"  {GT_PROBLEM_KINDS.get(kind, kind)}: {len(group)}")
            lines += [f"    - {p.message}" for p in group[:max_shown]]
            if len(group) > max_shown:
                lines.append(f"    ... and {len(group) - max_shown} more (`adplg doctor` lists them all)")
        return "\n".join(lines)


def check_test_gt(videos: Sequence[GTVideo], layout: SnippetLayout = SnippetLayout(), *, gt_file=None,
                  annotations=None, annotation_format: str = "ucf", list_file=None) -> GTCheck:
    """Check the frame GT of a test split against its videos (list order, labels, snippet counts) and build it.

    A GT file wins over annotations (as in ``build_test_set``). Errors: neither configured (``gt``), an unreadable
    GT file or one with non-0/1 values or the wrong length (``gt_file``, ``gt_values``, ``gt_length``), a malformed
    annotation file (``annotation``), an abnormal video without intervals (``unannotated``), a normal video with
    intervals (``label_conflict``), an interval beyond a video's end (``beyond_end``), a GT with a single class
    (``one_class``). Warnings: a UCF frame count that disagrees with T (``frame_count``), an annotated video missing
    from the list (``not_in_list``). Nothing is raised here: see :meth:`GTCheck.raise_errors`.

    The ``spread`` layout needs every video's raw frame count, which list-based datasets do not carry: the checks
    are skipped with a note (and no GT is built)."""
    check = GTCheck()
    videos = list(videos)
    if layout.kind != "uniform":
        check.notes.append(f"GT checks skipped: the {layout.kind!r} snippet layout needs every video's raw frame "
                           f"count, which list-based datasets do not carry")
        return check
    if gt_file is not None:
        _check_gt_file(Path(gt_file), videos, layout, check)
    elif annotations is not None:
        _check_annotations(Path(annotations), annotation_format, videos, layout, list_file, check)
    else:
        check.add("gt", "data.gt_file and data.annotations are both unset: expected one of them for the test "
                        "split's frame-level GT, got neither")
    if check.gt is not None and len(check.gt):
        _check_classes(check)
    return check


def _check_gt_file(path: Path, videos: list[GTVideo], layout: SnippetLayout, check: GTCheck) -> None:
    check.source, check.source_kind = str(path), "GT file"
    try:
        labels = read_gt_array(path)
    except AdplgError as exc:
        check.add("gt_file", str(exc))
        return
    check.frames = int(labels.shape[0])
    value_problem = gt_value_problem(path, labels)
    if value_problem:
        check.add("gt_values", value_problem)
    unknown = [v.name for v in videos if v.snippets is None]
    if unknown:
        check.notes.append(f"GT length not checked: T is unknown for {len(unknown)} videos with no readable crop "
                           f"(e.g. {unknown[0]!r})")
        return
    names = [v.name for v in videos]
    expected = [layout.num_frames(v.snippets) for v in videos if v.snippets is not None]  # every T is known here
    length_problem = gt_length_problem(path, check.frames, names, expected)
    if length_problem:
        check.add("gt_length", length_problem)
    elif not value_problem:
        check.gt = FrameGT(labels=labels.astype(np.uint8), offsets=frame_offsets(expected), videos=names)


def _read_annotation_file(path: Path, fmt: str, check: GTCheck):
    """``video -> intervals`` and (UCF files with a frame-count column) ``video -> frames``; ``(None, None)`` after
    recording the annotation file's problems."""
    try:
        intervals = read_annotations(path, fmt)
    except DataValidationError as exc:
        for message in exc.problems:
            check.add("annotation", message)
        return None, None
    except AdplgError as exc:
        check.add("annotation", str(exc))
        return None, None
    frame_counts = None
    if fmt == "ucf":
        try:
            frame_counts = read_ucf_frame_counts(path)
        except AdplgError:
            frame_counts = None  # Sultani's format has no frame-count column
    return intervals, frame_counts


def _check_annotations(path: Path, fmt: str, videos: list[GTVideo], layout: SnippetLayout, list_file,
                       check: GTCheck) -> None:
    check.source, check.source_kind = str(path), "annotation file"
    intervals, frame_counts = _read_annotation_file(path, fmt, check)
    if intervals is None:
        return
    fps = layout.frames_per_snippet
    # One partial snippet of slack past 16 * T is not an error: feature extractors drop the last incomplete
    # snippet, so a faithful annotation may end up to 15 frames after 16 * T. The official files do this (7 UCF
    # intervals, e.g. Assault006 ends at 8096 for 8080 GT frames, and 67 XD intervals); the GT is clipped there, as
    # in the official evaluation, and nothing is reported.
    check.rules.append(f"an annotation interval is beyond the video's end when start >= {fps} * T or end > "
                       f"{fps} * T + {fps} (one partial snippet of slack); a frame count n disagrees with T when "
                       f"|n // {fps} - T| > 1 (warning)")
    keys = {v.name: (v.name if v.name in intervals else annotation_key(v.name)) for v in videos}
    listed = set(keys.values())
    unmatched = [key for key in intervals if key not in listed]
    for video in videos:
        key = keys[video.name] if keys[video.name] in intervals else None
        _check_video_annotation(video, key, intervals, unmatched, path, check)
        if key is None or video.snippets is None:
            continue
        _check_interval_bounds(video, intervals[key], fps, path, check)
        if frame_counts and key in frame_counts:
            _check_frame_count(video, frame_counts[key], fps, path, check)
    for key in unmatched:
        check.add("not_in_list", f"annotation file {path}: video {key!r} is annotated but not in the test list "
                                 f"{list_file}")
    known = [v.snippets for v in videos if v.snippets is not None]
    if known:
        check.frames = sum(layout.num_frames(snippets) for snippets in known)
    if videos and len(known) == len(videos):
        check.gt = build_frame_gt([v.name for v in videos], known, intervals, layout=layout)


def _check_video_annotation(video: GTVideo, key: str | None, intervals: Mapping, unmatched: list[str], path: Path,
                            check: GTCheck) -> None:
    """An abnormal video needs intervals (else its GT is all normal); a normal video must have none."""
    spans = intervals.get(key, []) if key is not None else None
    if video.label == 1 and spans is None:
        close = difflib.get_close_matches(annotation_key(video.name), unmatched, n=1, cutoff=0.8)
        hint = f"; the file annotates {close[0]!r}, which is not in the list: a misspelt name?" if close else ""
        check.add("unannotated", f"{video.where}: abnormal video has no line in annotation file {path} (expected "
                                 f"its anomaly intervals, got none: its GT would be all normal){hint}")
    elif video.label == 1 and not spans:
        check.add("unannotated", f"{video.where}: abnormal video has no anomaly interval in annotation file {path} "
                                 f"(expected at least one start/end pair, got only -1)")
    elif video.label == 0 and spans:
        check.add("label_conflict", f"{video.where}: normal video (by its name) has anomaly intervals in annotation "
                                    f"file {path}: expected none, got {spans}")


def _check_interval_bounds(video: GTVideo, spans, fps: int, path: Path, check: GTCheck) -> None:
    assert video.snippets is not None  # the caller skips videos of unknown T
    frames = video.snippets * fps
    for start, end in spans:
        if start >= frames or end > frames + fps:
            check.add("beyond_end", f"{video.where}: annotation interval beyond the video's end ({path}): expected "
                                    f"frames within [0, {frames}] ({video.snippets} snippets x {fps}), got "
                                    f"[{start}, {end}]")


def _check_frame_count(video: GTVideo, frames: int, fps: int, path: Path, check: GTCheck) -> None:
    assert video.snippets is not None  # the caller skips videos of unknown T
    if abs(frames // fps - video.snippets) > 1:
        check.add("frame_count", f"{video.where}: feature length disagrees with the frame count in {path}: expected "
                                 f"T of about {frames} // {fps} = {frames // fps}, got {video.snippets}")


def _check_classes(check: GTCheck) -> None:
    """Frame AUC/AP need abnormal and normal frames: a GT with one class gives NaN (or a meaningless number)."""
    gt = check.gt
    assert gt is not None  # called once the GT is built
    abnormal = gt.num_abnormal
    if abnormal and abnormal < len(gt):
        return
    what = "no abnormal frame" if not abnormal else "no normal frame"
    got = f"all {len(gt)} frames {'normal (0)' if not abnormal else 'abnormal (1)'}"
    check.add("one_class", f"{check.source_kind} {check.source}: the ground truth of the {len(gt.videos)} test "
                           f"videos has {what}: expected both abnormal and normal frames, got {got}; frame AUC/AP "
                           f"are undefined, so `adplg train` / `adplg test` refuse this test set")
