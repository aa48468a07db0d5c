"""Feature inputs of scoring: which videos a list of paths names, and their crop files and extraction records.

Inputs are video files, folders of videos, ``.npy`` feature files (``[T, D]`` per crop, or ``[T, C, D]``) or folders
of them (searched recursively). Crop files of one video are grouped by name: ``<video>.npy`` / ``<video>__k.npy``
(``naming="ucf"`` or ``"xd"``) or ``<video>_k.npy`` (``"sht"``).

Half-extracted videos: in a folder written by ``adplg extract`` (it holds ``manifest.json``), a video whose crop files
lack their ``meta/<video>.json`` record (the extraction stopped before it finished the video) or number fewer than
the record (or manifest) says is refused, naming the video and its missing crops, unless ``allow_incomplete``.

Extraction records: ``<folder>/meta/<video>.json`` (:func:`adplg.data.extraction.read_video_record`) holds the
video's frame rate, its frame count and, when the container had them, the snippets' presentation times
(:func:`record_clock`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adplg.conventions import VIDEO_EXTENSIONS, crop_file_names, split_crop_suffix
from adplg.data.extraction import (
    TIME_FROM_FRAME_INDEX,
    TIME_FROM_PTS,
    TIME_FROM_SNIPPET_PTS,
    decode_frame_pts,
    read_manifest,
    read_video_record,
)
from adplg.data.lists import CropItem
from adplg.data.npy_files import npy_failure_reason
from adplg.errors import AdplgError

log = logging.getLogger(__name__)

PathLike = str | Path
Inputs = PathLike | Sequence[PathLike]

INCOMPLETE_SHOWN = 3  # half-extracted videos named one by one in the error; the others are counted


# ------------------------------------------------------------------------------------------------------ paths
def as_paths(inputs: Inputs) -> list[Path]:
    """``inputs`` (one path, or a non-empty sequence of them) as a list of paths."""
    if isinstance(inputs, (str, Path)):
        return [Path(inputs)]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise AdplgError("no inputs given (expected .npy feature files, folders of them, or videos)")
    return paths


def _has_videos(folder: Path) -> bool:

    return any(p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def is_video_input(path: Path) -> bool:
    """A video file, or a folder holding videos and no ``.npy`` features (a folder of videos); missing paths are
    classified by their suffix. A folder with neither is no video input (:meth:`Scorer.score` refuses it)."""
    if path.is_dir():
        return not any(path.rglob("*.npy")) and _has_videos(path)
    if not path.exists():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    return path.suffix != ".npy"


def _check_inputs_exist(paths: list[Path]) -> None:

    for path in paths:
        if path.is_dir() and not any(path.rglob("*.npy")) and not _has_videos(path):
            raise AdplgError(f"no .npy features or videos found in {path} (expected <video>[__k].npy feature files "
                             f"or video files: {', '.join(VIDEO_EXTENSIONS)})")
        if path.exists():
            continue
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise AdplgError(f"video not found: {path}")
        if path.suffix == ".npy":
            raise AdplgError(f"feature file not found: {path}")
        raise AdplgError(f"input not found: {path} (expected a video, a .npy feature file or a folder of either)")


def split_inputs(inputs: Inputs, naming: str | None = None) -> tuple[list[Path], list[Path], str]:
    """``(videos, feature inputs, naming)`` of what ``score`` was given, after checking every input exists: video
    files and folders of videos, then ``.npy`` files and folders of them; ``naming`` defaults to the extraction
    manifest's, else ucf."""
    paths = as_paths(inputs)
    _check_inputs_exist(paths)
    videos = [p for p in paths if is_video_input(p)]
    features = [p for p in paths if p not in videos]
    return videos, features, naming or manifest_naming(features) or "ucf"


def manifest_naming(inputs: list[Path]) -> str | None:
    """The crop naming recorded by ``adplg extract`` in the (first) input folder's manifest.json, if any."""
    for path in inputs:
        manifest = read_manifest(path if path.is_dir() else path.parent)
        if manifest is not None:
            return manifest.get("naming")
    return None


# ------------------------------------------------------------------------------------------------------ feature files
def _npy_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(path.rglob("*.npy"))
            if not found:
                raise AdplgError(f"{path}: no .npy feature files found in this folder (expected <video>[__k].npy)")
            files.extend(found)
        elif path.is_file() and path.suffix == ".npy":
            files.append(path)
        elif path.exists():
            raise AdplgError(f"{path}: expected a .npy feature file or a folder of them, got a {path.suffix or 'plain'}"
                             f" file (videos go through `adplg extract` or `adplg score VIDEO --weights ...`)")
        else:
            raise AdplgError(f"feature input not found: {path}")
    return files


def _array_shape(path: Path) -> tuple[int, ...]:
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-data problem
        raise AdplgError(f"{path}: cannot read the .npy header: {npy_failure_reason(path, exc)}") from None


def incomplete_videos(groups: dict[tuple[Path, str], dict[int, Path]], naming: str = "ucf") -> list[str]:
    """Why each video of an ``adplg extract`` folder in ``groups`` (``(folder, video) -> {crop: file}``) is
    half-extracted: crop files without the ``meta/<video>.json`` record, or fewer crop files than the record (else
    the manifest) names. Videos outside extraction folders (no ``manifest.json`` recording the ``crops`` setting, as
    every manifest of ``adplg extract`` does) are not checked."""
    manifests: dict[Path, dict | None] = {}
    problems = []
    for (folder, video), crops in groups.items():
        if folder not in manifests:
            manifests[folder] = read_manifest(folder)
        manifest = manifests[folder]
        if manifest is None or "crops" not in manifest:
            continue
        record = read_video_record(folder, video)
        expected: list[str] = []
        if record is not None and isinstance(record.get("crop_files"), list):
            expected = [str(f) for f in record["crop_files"]]
        else:
            count = (record or {}).get("crops", manifest.get("crops"))
            if isinstance(count, int) and count > 0:
                expected = crop_file_names(video, count, manifest.get("naming") or naming)
        missing = [f for f in expected if not (folder / f).is_file()]
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        if record is None:
            problems.append(f"{video}: {len(crops)} crop file(s) but no extraction record meta/{video}.json"
                            + (f" (missing crops: {shown})" if missing else ""))
        elif missing:
            problems.append(f"{video}: {len(expected) - len(missing)} of {len(expected)} crop files (missing "
                            f"{shown})")
    return problems


def feature_items(inputs: list[Path], naming: str = "ucf", allow_incomplete: bool = False) -> list[CropItem]:
    """One :class:`CropItem` per crop of every video found in ``inputs``, videos in path order, crops in order.

    A lone ``.npy`` file brings its sibling crop files (same video name, same folder). ``[T, C, D]`` files give one
    item per crop. Two folders holding the same video name are kept apart (the item's ``video`` is the name).
    Half-extracted videos (see the module docstring) are an :class:`AdplgError`, or a warning with
    ``allow_incomplete`` (their crop files are scored as they are)."""
    fmt = "sht" if naming == "sht" else "ucf"
    files = _npy_files(inputs)
    for f in list(files):  # a single crop file named on the command line brings its siblings
        video, _ = split_crop_suffix(f.stem, fmt)
        files.extend(p for p in f.parent.glob("*.npy") if split_crop_suffix(p.stem, fmt)[0] == video)
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for f in dict.fromkeys(files):
        video, crop = split_crop_suffix(f.stem, fmt)
        groups.setdefault((f.parent, video), {})[crop] = f
    names = [video for _, video in groups]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AdplgError(f"video name(s) {duplicates} found in more than one folder "
                         f"({[str(d) for (d, v) in groups if v in duplicates]}); score one folder at a time")
    incomplete = incomplete_videos(groups, naming)
    if incomplete:
        folders = sorted({str(d) for d, _ in groups})
        listed = "; ".join(incomplete[:INCOMPLETE_SHOWN])
        if len(incomplete) > INCOMPLETE_SHOWN:
            listed += f"; and {len(incomplete) - INCOMPLETE_SHOWN} more"
        where = f"{len(incomplete)} half-extracted video(s) in {', '.join(folders)}: {listed}"
        if not allow_incomplete:
            raise AdplgError(f"{where}. Expected every video of an `adplg extract` folder finished (all its crop "
                             f"files and meta/<video>.json); run `adplg extract` again into the same folder to finish "
                             f"them, or pass --allow-incomplete (allow_incomplete=True) to score the crops there are")
        log.warning("%s; scoring the crops there are (allow_incomplete)", where)
    items: list[CropItem] = []
    for (_, video), crops in groups.items():
        for crop, path in sorted(crops.items()):
            shape = _array_shape(path)
            if len(shape) == 3:
                items.extend(CropItem(path=path, video=video, crop=c, label=-1, history_key=f"{video}__{c}",
                                      array_index=c) for c in range(shape[1]))
            else:
                items.append(CropItem(path=path, video=video, crop=crop, label=-1, history_key=f"{video}__{crop}"))
    return items


@dataclass(frozen=True, kw_only=True)
class RecordClock:
    """The clock an extraction record gives a video: ``fps`` (the container's nominal rate, None when absent),
    ``snippet_start_s`` / ``snippet_end_s`` ``[T]`` seconds and ``frame_start_s`` ``[F]`` (every decoded frame's
    presentation time) where the record has them, and its ``time_source``."""

    fps: float | None = None
    snippet_start_s: np.ndarray | None = None
    snippet_end_s: np.ndarray | None = None
    frame_start_s: np.ndarray | None = None
    time_source: str | None = None


def record_clock(record: dict | None, snippets: int, where: str) -> RecordClock:
    """The :class:`RecordClock` of an extraction record (all None without one). A record whose times are
    ``frame index / fps`` gives only its rate: ``i / fps`` is the same clock."""
    if record is None:
        return RecordClock()
    try:
        rate = float(record.get("fps") or 0)
    except (TypeError, ValueError):
        raise AdplgError(f"{where}: expected a numeric 'fps', got {record.get('fps')!r}") from None
    fps = rate if np.isfinite(rate) and rate > 0 else None
    source = record.get("time_source")
    start, end = record.get("snippet_start_s"), record.get("snippet_end_s")
    if start is None or end is None or source == TIME_FROM_FRAME_INDEX:
        return RecordClock(fps=fps, time_source=source)
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    if start.shape != (snippets,) or end.shape != (snippets,) or not np.all(np.isfinite(start)) \
            or np.any(end < start):
        raise AdplgError(f"{where}: expected {snippets} snippet start/end times with end >= start, got "
                         f"{start.shape[0] if start.ndim else 0} start and {end.shape[0] if end.ndim else 0} end times")
    frames = None if record.get("frame_pts") is None else decode_frame_pts(record["frame_pts"], where)
    return RecordClock(fps=fps, snippet_start_s=start, snippet_end_s=end, frame_start_s=frames,
                       time_source=TIME_FROM_PTS if frames is not None else TIME_FROM_SNIPPET_PTS)
