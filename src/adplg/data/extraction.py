"""The extraction folder format: what ``adplg extract`` writes, and the one reader and writer of it.

A folder ``<out>`` of extracted features holds::

    manifest.json          the run's settings (written first, once)
    meta/<video>.json      one record per finished video (written after all its crop files)
    <crop files>.npy       one [T, D] float32 array per crop view, named by ``naming`` (adplg.conventions)
    features.list          one absolute crop path per line (rewritten at the end of every run)

``manifest.json`` (a JSON object)
    ``backbone`` ("i3d" / "clip"), ``weights`` (absolute path), ``weights_sha256``, ``feature_dim`` (D),
    ``crops`` (1, 5 or 10), ``crop_order`` (text), ``resize_short_side`` (px), ``resize_mode`` ("bilinear,
    antialiased" / "bicubic, antialiased"), ``crop_size`` (px), ``snippet_frames`` (16), ``snippet_layout`` (text),
    ``normalisation`` (text), ``clip_frame`` ("middle" / "mean"; null for i3d), ``dtype`` ("float32"), ``naming``
    ("ucf" / "xd" / "sht"), ``adplg`` (the version that wrote it) and ``versions`` (torch, numpy, PyAV, ...).
    ``FEATURE_KEYS`` are the settings that change the features: a folder never mixes two values of any of them. A
    manifest with ``backbone`` and ``weights_sha256`` is one ``adplg extract`` wrote (:func:`check_manifest_is_ours`).

``meta/<video>.json`` (a JSON object; its presence marks the video as finished)
    ``video`` (the name: the video file's stem), ``source`` (the video's absolute path), ``fps`` (the container's
    rate), ``container_frames`` (the container's frame count, 0 when unknown), ``frames_decoded``, ``snippets`` (T),
    ``frames_covered`` (T x 16), ``snippet_start_s`` / ``snippet_end_s`` (``[T]`` seconds from the stream's start, 6
    decimals; a snippet ends where the next decoded frame starts), ``time_source`` (:data:`TIME_FROM_PTS`, or
    :data:`TIME_FROM_FRAME_INDEX` when the container has no usable timestamps and ``i / fps`` was used),
    ``frame_pts`` (with "pts" only: every decoded frame's presentation time, run-length coded,
    :func:`encode_frame_pts`), ``duration_s`` and ``duration_source`` (the stream's or
    container's duration, never less than the end of the last decoded frame; "stream", "container" or "decoded
    frames"), ``frame_count_mismatch`` (only when the container's count differs from the frames decoded:
    ``{"container": N, "decoded": M}``), ``width`` / ``height`` (px), ``crops``, ``crop_files`` (the crop file
    names in crop order, relative to the folder), ``feature_shape`` (``[T, D]``), ``settings_fingerprint``
    (:func:`settings_fingerprint` of the manifest) and ``seconds`` (the extraction time). The times are absent when
    the video has neither timestamps nor a frame rate.

``features.list``
    The absolute paths of the crop files of every finished video (a record whose crop files all exist), videos by
    name, crops in order; readable by ``adplg.data.lists.read_list(path, naming)``.

Policy: every file is written to a temporary name and renamed, so a crash never leaves a half-written file. Reading
a manifest or record that exists but is not a readable JSON object is always an :class:`AdplgError` naming the file,
what was expected and what was found; a caller that goes on despite it (the doctor collects problems, a re-run
extracts such a video again) catches that error.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from adplg.conventions import BACKBONES
from adplg.errors import AdplgError
from adplg.io import atomic_write_bytes, atomic_write_text, check_output_dir

__all__ = [
    "MANIFEST_NAME",
    "META_DIR",
    "FEATURE_LIST_NAME",
    "FEATURE_FORMAT_VERSION",
    "FEATURE_KEYS",
    "manifest_path",
    "meta_path",
    "feature_list_path",
    "read_manifest",
    "write_manifest",
    "check_manifest_is_ours",
    "read_video_record",
    "write_video_record",
    "video_record_paths",
    "record_crop_files",
    "write_crop_file",
    "settings_fingerprint",
    "is_finished",
    "write_feature_list",
    "foreign_files",
    "check_extract_folder",
    "is_extraction_folder",
    "TIME_FROM_PTS",
    "TIME_FROM_FRAME_INDEX",
    "TIME_FROM_SNIPPET_PTS",
    "encode_frame_pts",
    "decode_frame_pts",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
META_DIR = "meta"
FEATURE_LIST_NAME = "features.list"
# the layout and meaning of the feature files and meta records; part of every video's settings fingerprint, so a
# change here makes re-runs redo the videos extracted before it
FEATURE_FORMAT_VERSION = 2  # 2: records keep every frame's presentation time (frame_pts)
# the clock of a record's times (``time_source``), worded the same in the record, a score summary and the report
TIME_FROM_PTS = "pts"  # the container's presentation time of every frame
TIME_FROM_FRAME_INDEX = "frame index"  # frame i at i / fps
TIME_FROM_SNIPPET_PTS = "pts per snippet, frames spaced evenly within"  # snippet times only (older records, streams)
# manifest keys whose change changes the features: a folder never mixes two values of any of them
FEATURE_KEYS = ("backbone", "weights_sha256", "crops", "resize_short_side", "resize_mode", "crop_size",
                "snippet_frames", "normalisation", "clip_frame", "naming")
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


# ------------------------------------------------------------------------------------------------------- paths
def manifest_path(folder: str | Path) -> Path:
    """``<folder>/manifest.json``."""
    return Path(folder) / MANIFEST_NAME


def meta_path(folder: str | Path, video: str) -> Path:
    """``<folder>/meta/<video>.json``: the record of the finished video ``video``."""
    return Path(folder) / META_DIR / f"{video}.json"


def feature_list_path(folder: str | Path) -> Path:
    """``<folder>/features.list``."""
    return Path(folder) / FEATURE_LIST_NAME


# ------------------------------------------------------------------------------------------------------- reading
def _read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; :class:`AdplgError` naming the file when it cannot be read or is no object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AdplgError(f"{path}: cannot read the {what} as JSON: {type(exc).__name__}: {exc} (expected the JSON "
                         "object `adplg extract` writes)") from None
    if not isinstance(data, dict):
        raise AdplgError(f"{path}: {what}: expected a JSON object (as `adplg extract` writes it), got a JSON "
                         f"{_JSON_TYPES.get(type(data), type(data).__name__)}")
    return data


def read_manifest(folder: str | Path) -> dict | None:
    """The ``manifest.json`` of ``folder`` as a dict, or None when the folder has none. A manifest that cannot be read
    or is no JSON object raises :class:`AdplgError`."""
    path = manifest_path(folder)
    if not path.is_file():
        return None
    return _read_json_object(path, "extraction manifest")


def read_video_record(folder: str | Path, video: str) -> dict | None:
    """The record ``meta/<video>.json`` of ``folder`` as a dict, or None when there is none (the video is not
    finished). A record that cannot be read or is no JSON object raises :class:`AdplgError`."""
    path = meta_path(folder, video)
    if not path.is_file():
        return None
    return _read_json_object(path, "extraction record")


def video_record_paths(folder: str | Path) -> list[Path]:
    """The record files ``meta/*.json`` of ``folder``, sorted by video name (``path.stem``)."""
    return sorted((Path(folder) / META_DIR).glob("*.json"))


def record_crop_files(path: Path, record: dict | None) -> list[str]:
    """The ``crop_files`` of the record read from ``path``, after checking the keys every finished video's record
    has: ``crop_files`` a non-empty list of file names and ``snippets`` an integer. :class:`AdplgError` otherwise
    (also for no record: None)."""
    if record is None:
        raise AdplgError(f"{path}: expected an extraction record, got none (the file was removed?)")
    files, snippets = record.get("crop_files"), record.get("snippets")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise AdplgError(f"{path}: crop_files: expected a non-empty list of file names, got {files!r}")
    if isinstance(snippets, bool) or not isinstance(snippets, int):
        raise AdplgError(f"{path}: snippets: expected an integer (T), got {snippets!r}")
    return files


def check_manifest_is_ours(path: Path, manifest: dict | None) -> dict:
    """``manifest`` (read from ``path``) was written by ``adplg extract``: it names a known ``backbone`` and has
    ``weights_sha256``. Returns it; :class:`AdplgError` otherwise (a folder an extraction must not write into; also
    for no manifest: None)."""
    if manifest is None:
        raise AdplgError(f"{path}: expected the manifest of an earlier `adplg extract`, got none (the file was "
                         "removed?)")
    if manifest.get("backbone") not in BACKBONES or "weights_sha256" not in manifest:
        raise AdplgError(f"{path}: not a manifest written by `adplg extract` (expected its 'backbone' (one of "
                         f"{', '.join(BACKBONES)}) and 'weights_sha256' keys, got backbone "
                         f"{manifest.get('backbone')!r} and {'a' if 'weights_sha256' in manifest else 'no'} "
                         f"weights_sha256); refusing to write into {path.parent}, nothing was overwritten: pick an "
                         "empty folder for the output")
    return manifest


def is_extraction_folder(folder: str | Path) -> bool:
    """A folder written by ``adplg extract``: it holds ``manifest.json`` (or, with the manifest lost, a ``meta``
    folder and a ``features.list``)."""
    folder = Path(folder)
    return folder.is_dir() and (manifest_path(folder).is_file()
                                or ((folder / META_DIR).is_dir() and feature_list_path(folder).is_file()))


def encode_frame_pts(times_s, time_base: Fraction | None) -> dict:
    """Every frame's presentation time ``times_s [F]`` (seconds from the stream's start) as the record's compact
    ``frame_pts``: ``{"time_base": "1/1000", "first": ticks, "steps": [[ticks, count], ...]}``, the first frame's
    time and runs of equal steps between consecutive frames, in integer ticks of the stream's ``time_base`` (exact;
    microseconds without one). A constant-rate video is one run."""
    base = Fraction(time_base) if time_base else Fraction(1, 1_000_000)
    ticks = np.rint(np.asarray(times_s, np.float64) / float(base)).astype(np.int64)
    steps: list[list[int]] = []
    for step in np.diff(ticks).tolist():
        if steps and steps[-1][0] == step:
            steps[-1][1] += 1
        else:
            steps.append([step, 1])
    return {"time_base": f"{base.numerator}/{base.denominator}", "first": int(ticks[0]) if len(ticks) else 0,
            "steps": steps}


def decode_frame_pts(value, where: str) -> np.ndarray:
    """The ``[F]`` float64 seconds of a record's ``frame_pts`` (:func:`encode_frame_pts`); an :class:`AdplgError`
    naming ``where`` (the record) when it is not in that form."""
    try:
        base = Fraction(value["time_base"])
        steps = np.asarray(value["steps"], dtype=np.int64).reshape(-1, 2)
        first = int(value["first"])
        if base <= 0 or np.any(steps[:, 1] < 1) or np.any(steps[:, 0] < 0):
            raise ValueError("a time base <= 0, a count < 1 or a step < 0")
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise AdplgError(f"{where}: frame_pts: expected {{'time_base': 'N/D', 'first': ticks, 'steps': [[ticks, "
                         f"count], ...]}} with steps >= 0 and counts >= 1, got {str(value)[:120]} ({exc})") from None
    ticks = first + np.concatenate([[0], np.cumsum(np.repeat(steps[:, 0], steps[:, 1]))])
    return ticks * float(base)


# ------------------------------------------------------------------------------------------------------- writing
def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``manifest.json`` into ``folder`` (created when missing); returns its path."""
    path = manifest_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def write_video_record(folder: str | Path, video: str, record: dict) -> Path:
    """Write ``meta/<video>.json`` (last, after the video's crop files: it marks the video as finished)."""
    path = meta_path(folder, video)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def write_crop_file(path: Path, features: np.ndarray) -> None:
    """Write one crop's features ``[T, D]`` as a float32 ``.npy`` (no pickle), atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def settings_fingerprint(manifest: dict) -> str:
    """Hex sha256 of what makes a video's feature files: the run manifest's ``FEATURE_KEYS`` and ``feature_dim``, and
    ``FEATURE_FORMAT_VERSION``. Stored in every ``meta/<video>.json``; a video counts as finished only under the same
    fingerprint."""
    settings = {key: manifest.get(key) for key in (*FEATURE_KEYS, "feature_dim")}
    settings["feature_format"] = FEATURE_FORMAT_VERSION
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def is_finished(folder: str | Path, video: str, crop_files: list[str], fingerprint: str) -> bool:
    """The record of ``video`` holds ``fingerprint`` and every one of its ``crop_files`` exists. A record that
    cannot be read counts as unfinished (logged): extracting the video again rewrites it."""
    try:
        record = read_video_record(folder, video)
    except AdplgError as exc:
        log.warning("%s; extracting the video again", exc)
        return False
    return (record is not None and record.get("settings_fingerprint") == fingerprint
            and all((Path(folder) / f).is_file() for f in crop_files))


def write_feature_list(folder: str | Path) -> Path | None:
    """Rewrite ``<folder>/features.list`` from every finished video (a record whose crop files all exist): one
    absolute crop path per line, videos sorted by name, crops in order. A record that cannot be read is left out
    (logged). Returns the list's path, or None when no video is finished yet (nothing is written)."""
    folder = Path(folder).resolve()
    lines: list[str] = []
    for path in video_record_paths(folder):
        try:
            crop_files = record_crop_files(path, read_video_record(folder, path.stem))
        except AdplgError as exc:
            log.warning("features.list leaves out %s: %s", path.stem, exc)
            continue
        crops = [folder / f for f in crop_files]
        if all(p.is_file() for p in crops):
            lines.extend(str(p) for p in crops)
    if not lines:
        return None
    if any(any(ch.isspace() for ch in line) for line in lines):
        log.warning("%s: some paths contain whitespace; the 'sht' list reader splits lines on whitespace", folder)
    target = feature_list_path(folder)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


# ------------------------------------------------------------------------------------------- the output folder
def foreign_files(folder: str | Path) -> list[Path]:
    """Files of ``folder`` that an extraction could overwrite: ``*.npy``, ``features.list``, ``meta/*.json``
    (foreign when the folder has no manifest of ours)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted(folder.glob("*.npy"))
    found += [feature_list_path(folder)] if os.path.lexists(feature_list_path(folder)) else []
    return found + video_record_paths(folder)


def check_extract_folder(out_dir: str | Path, settings: dict | None = None) -> Path:
    """Check ``out_dir`` before extracting into it (no compute; nothing is written): it is, or can be made, a writable
    folder; without our ``manifest.json`` it holds no file an extraction could overwrite (:func:`foreign_files`: such
    a folder is refused, never written into); with one, the manifest is ours (:func:`check_manifest_is_ours`) and
    (``settings``, the whole or part of a run manifest) no setting that changes the features (``FEATURE_KEYS``)
    differs. Raises :class:`AdplgError`; returns ``out_dir`` as a :class:`Path`."""
    out_dir = check_output_dir(out_dir, "output folder")
    path = manifest_path(out_dir)
    if os.path.lexists(path):
        if not path.is_file():
            raise AdplgError(f"{path}: expected the manifest file of an earlier run, found a folder; pick an empty "
                             "folder for the output")
        previous = check_manifest_is_ours(path, read_manifest(out_dir))
        for key in FEATURE_KEYS:
            if settings is not None and key in settings and previous.get(key) != settings.get(key):
                raise AdplgError(
                    f"{path}: setting {key!r} differs from the earlier run in this folder: the folder has "
                    f"{previous.get(key)!r}, this run has {settings.get(key)!r} (features made with different "
                    "settings are never mixed; use a new output folder)"
                )
        return out_dir
    foreign = foreign_files(out_dir)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise AdplgError(f"output folder {out_dir}: holds files such as {foreign[0]}{more} but no manifest.json of "
                         "`adplg extract`, so they were not written by it; refusing to write there (nothing was "
                         "overwritten): pick an empty folder for the output, or one an earlier `adplg extract` "
                         "filled")
    return out_dir
