"""Readers for the list files that name the feature files of a split (METHOD §4.2).

Supported layouts (``LIST_FORMATS``):

``ucf``
    One crop path per line (``UCF_Train.list``, ``UCF_Test.list``). Crop 0 has no suffix, crops 1..9 end in ``__k``.
    Label 0 when ``Normal`` is in the file name. History key: the file name up to ``_x264`` (``Abuse001``), shared by
    the crops of a video (METHOD §2.5).
``xd``
    One crop path per line (``XD_Train.list``, ``XD_Test.list``), crops ``__0..__4``. Label 0 when ``_label_A`` is in
    the file name. History key: the full path of the crop file (as resolved by this reader).
``sht``
    ``<path> [label]`` per line (``SHT_Train.list`` has a ``1.0``/``0.0`` column, ``SHT_Test.list`` has none), crops
    ``_0..._9``. A line without a label column gets ``label = -1`` (unknown): the test labels come from the frame GT
    (a video is abnormal when any of its GT frames is 1), see ``adplg.data.gt``. History key: the crop file name
    without ``.npy`` (``01_0014_3``).
``csv``
    VadCLIP csv with a header holding ``path`` and ``label`` columns (``ucf_CLIP_rgb.csv`` ...). Crops ``__k``. Label 0
    when the label column is ``Normal`` or ``A`` (the XD normal class) or ``0``, else 1. Relative paths are resolved
    against the csv's folder when ``root`` is not given. History key: the crop file name without ``.npy``.
``folder``
    A csv with ``video`` and ``label`` columns; the features of a video are ``<root or the csv's folder>/<video>.npy``,
    either ``[T, D]`` (one crop) or ``[T, C, D]`` (``C`` crops, one ``CropItem`` per crop with ``array_index``). The
    array headers are read here (to count the crops); their contents are validated by ``FeatureStore.load``. History
    key: the video name for a ``[T, D]`` file, ``<video>__<c>`` for crop ``c`` of a ``[T, C, D]`` file.

Relative paths in a list file (every format) are resolved against the list file's folder, never the current
directory; absolute paths are used as written.

Quoting: an error quotes at most ``QUOTED_LINES`` problem lines of a file (then "... and N more"), each shortened to
``QUOTED_CHARS`` characters; a file most of whose lines are not entries of the format at all gets one message
without its contents ("does not look like a list file of format 'ucf' (N of M lines unreadable)"), see
:func:`line_problems_error`.

Re-rooting: the official lists hold the authors' absolute paths. With ``root`` given, the part of every path after
``strip_prefix`` (default: the longest common directory prefix of all paths of the list) is joined onto ``root``::

    read_list("UCF_Train.list", "ucf", root="/data/ucf")[0].path == Path("/data/ucf/Abuse/Abuse001_x264.npy")
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adplg.conventions import split_crop_suffix
from adplg.data.npy_files import npy_failure_reason
from adplg.errors import AdplgError, DataValidationError

__all__ = [
    "CropItem",
    "VideoItem",
    "LIST_FORMATS",
    "read_list",
    "group_videos",
    "split_crop_suffix",
    "parse_label",
    "common_dir_prefix",
    "MISSING_SHOWN",
    "MissingFilesError",
    "missing_root_hint",
    "QUOTED_LINES",
    "LineProblemsError",
    "NotAListError",
    "line_problems_error",
    "quote",
]

LIST_FORMATS = ("ucf", "xd", "sht", "csv", "folder")

_NORMAL_CLASS_NAMES = ("normal", "a")


@dataclass(frozen=True, kw_only=True)
class CropItem:
    """One crop feature file (or one crop of a ``[T, C, D]`` file) of a list."""

    path: Path
    video: str
    crop: int
    label: int
    history_key: str
    array_index: int | None = None
    # the entry as written in the list file (the path before re-rooting; the video name of a folder list), or None
    listed: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class VideoItem:
    """The crops of one video, in list order."""

    name: str
    label: int
    crops: tuple[CropItem, ...]


# ----------------------------------------------------------------------------------------------------------- helpers
def parse_label(value: str) -> int:
    """A label column: ``0``/``1`` (also ``0.0``/``1.0``), or a class name where ``Normal``/``A`` mean normal (0)."""
    v = value.strip()
    if not v:
        raise ValueError("empty label")
    try:
        f = float(v)
    except ValueError:
        return 0 if v.lower() in _NORMAL_CLASS_NAMES else 1
    if f not in (0.0, 1.0):
        raise ValueError(f"numeric label must be 0 or 1, got {quote(v)}")
    return int(f)


def _parts(path_str: str) -> tuple[str, ...]:
    r"""Path components (a leading ``''`` marks an absolute path); Windows separators are accepted too
    (``G:\feats\a.npy``)."""
    raw = path_str.replace("\\", "/").split("/")
    return tuple(p for i, p in enumerate(raw) if (p and p != ".") or i == 0)


def common_dir_prefix(paths: list[str]) -> tuple[str, ...]:
    """Longest common directory prefix (as components) of the parent folders of ``paths``."""
    if not paths:
        return ()
    prefix = _parts(paths[0])[:-1]
    for p in paths[1:]:
        parts = _parts(p)[:-1]
        n = 0
        for a, b in zip(prefix, parts):
            if a != b:
                break
            n += 1
        prefix = prefix[:n]
        if not prefix:
            break
    return prefix


def _stem(path_str: str) -> str:
    name = path_str.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".npy") else name


# --------------------------------------------------------------------------------- quoting a file's lines in errors
QUOTED_LINES = 3  # problem lines of one file quoted in an error message; the others are counted
QUOTED_CHARS = 100  # a quoted line (or token) is cut to this many characters


def quote(text: str) -> str:
    """``repr`` of a piece of a file's content, cut to :data:`QUOTED_CHARS` characters."""
    text = str(text)
    return repr(text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "...")


class LineProblemsError(DataValidationError):
    """Problems of some lines of one file: ``problems`` holds every one of them; the message quotes the first
    :data:`QUOTED_LINES` and counts the others, so an error never prints a whole file."""

    def __init__(self, problems: Sequence[str], context: str):
        super().__init__(list(problems), context=context)
        shown = self.problems[:QUOTED_LINES]
        if len(self.problems) > QUOTED_LINES:
            shown.append(f"... and {len(self.problems) - QUOTED_LINES} more")
        self.args = (f"{context}: {len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in shown),)


class NotAListError(DataValidationError):
    """A file that is not a list of the expected format at all: one line, none of its contents."""

    def __init__(self, message: str):
        super().__init__([message], context=message)
        self.args = (message,)


def line_problems_error(path, problems: Sequence[str], unreadable: int, total: int, kind: str = "list file",
                        fmt: str = "", expected: str = "") -> DataValidationError:
    """The error for the ``problems`` of the lines of file ``path``: a :class:`NotAListError` without contents when
    more than :data:`QUOTED_LINES` and more than half of its ``total`` non-empty lines are ``unreadable`` (not
    entries of the format at all: the file is something else, e.g. ``/etc/passwd``), else a
    :class:`LineProblemsError` quoting at most :data:`QUOTED_LINES` of them."""
    if unreadable > QUOTED_LINES and 2 * unreadable > total:
        what = f"{kind} of format {fmt!r}" if fmt else kind
        shape = f"; expected {expected}" if expected else ""
        return NotAListError(f"{path} does not look like a {what} ({unreadable} of {total} lines unreadable{shape})")
    return LineProblemsError(problems, context=f"{kind} {path}")


# ------------------------------------------------------------------------------------------------------- raw reading
def read_text_lines(path: Path, kind: str = "list file") -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers; clear errors for a missing, unreadable or empty file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AdplgError(f"{kind} {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdplgError(f"{kind} {path}: cannot be read ({exc})") from None
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines:
        raise AdplgError(f"{kind} {path}: empty (expected at least one entry, got 0 lines)")
    return lines


def _read_csv(list_file: Path, required: tuple[str, str]) -> list[tuple[int, dict[str, str]]]:
    lines = read_text_lines(list_file)  # errors for missing / unreadable / empty files
    rows = list(csv.reader([ln for _, ln in lines]))
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise AdplgError(
            f"list file {list_file}, line {lines[0][0]}: expected a header with columns {','.join(required)}, "
            f"got {quote(','.join(rows[0]))}"
        )
    out = []
    problems = []
    for (lineno, _), row in zip(lines[1:], rows[1:]):
        if len(row) != len(header):
            problems.append(
                f"list file {list_file}, line {lineno}: expected {len(header)} columns ({','.join(header)}), "
                f"got {len(row)}: {quote(','.join(row))}"
            )
            continue
        out.append((lineno, {h: v.strip() for h, v in zip(header, row)}))
    if problems:
        raise line_problems_error(list_file, problems, len(problems), len(lines) - 1, fmt="csv",
                                  expected=f"{len(header)} comma-separated columns ({','.join(header)})")
    if not out:
        raise AdplgError(f"list file {list_file}: empty (expected at least one row after the header, got 0)")
    return out


class _Rerooter:
    """Maps the path strings of one list onto the user's disk."""

    def __init__(self, list_file: Path, raw_paths: list[str], root, strip_prefix, relative_to_list: bool):
        self.list_file = list_file
        self.root = None if root is None else Path(root)
        self.relative_to_list = relative_to_list
        if self.root is not None:
            if strip_prefix is None:
                self.prefix = common_dir_prefix(raw_paths)
            else:
                self.prefix = _parts(str(strip_prefix))

    def __call__(self, raw: str) -> Path:
        """Raises ValueError when the path does not start with the prefix to strip."""
        if self.root is None:
            p = Path(raw)
            if self.relative_to_list and not p.is_absolute():
                p = self.list_file.parent / p
            return p
        parts = _parts(raw)
        n = len(self.prefix)
        if tuple(parts[:n]) != self.prefix or len(parts) <= n:
            raise ValueError(f"expected a path under {'/'.join(self.prefix) or '(empty prefix)'!r}, got {quote(raw)}")
        return self.root.joinpath(*parts[n:])


# ------------------------------------------------------------------------------------------- missing feature files
MISSING_SHOWN = 5  # missing files named one by one when many are missing; the rest are counted


class MissingFilesError(DataValidationError):
    """A ``DataValidationError`` where many feature files are missing (usually a wrong feature root).

    ``problems`` still holds every problem; the message shows the count of missing files, the ``hint`` (which root
    to set) once, the first ``MISSING_SHOWN`` missing files and the count of the others, then the other problems."""

    def __init__(self, problems: Sequence[str], missing: Sequence[str], total_files: int, context: str,
                 hint: str | None = None):
        super().__init__(list(problems), context=context)
        missing_set = set(missing)
        others = [p for p in self.problems if p not in missing_set]
        lines = [*missing[:MISSING_SHOWN]]
        if len(missing) > MISSING_SHOWN:
            lines.append(f"... and {len(missing) - MISSING_SHOWN} more feature files not found")
        lines += others
        head = (f"{context}: {len(self.problems)} problem(s); {len(missing)} of {total_files} feature files not "
                f"found")
        self.args = ("\n".join([head, *([f"  {hint}"] if hint else []), *(f"  - {p}" for p in lines)]),)


def many_missing(missing: int, total: int) -> bool:
    """Whether ``missing`` of ``total`` files is "many": more than ``MISSING_SHOWN``, or all of them."""
    return missing > MISSING_SHOWN or (missing > 0 and missing == total)


def _probe_root(root: Path | None, prefix: tuple[str, ...], relative: Path) -> Path | None:
    """A folder near ``root`` that holds ``relative``: ``root`` (or up to two folders above it) joined with the last
    1-3 folders of the list's own prefix (``/data/ucf`` + ``test/RGB``), None when there is none."""
    if root is None:
        return None
    for base in (root, *list(root.parents)[:2]):
        for k in range(0, min(3, len(prefix)) + 1):
            candidate = base.joinpath(*prefix[len(prefix) - k:]) if k else base
            if candidate != root and (candidate / relative).is_file():
                return candidate
    return None


def missing_root_hint(example: CropItem, items: Sequence[CropItem], list_file, root, root_key: str | None,
                      fmt: str = "ucf", note: str = "") -> str:
    """The one-line advice for many missing feature files of ``list_file``: where its entries are looked up, shown
    on ``example`` (its entry as written in the list and the path looked up), and which root to set (``root_key``,
    e.g. ``data.test_root``), with a folder near ``root`` that does hold the file when there is one; ``note`` is
    appended."""
    key = root_key or "data.train_root / data.test_root (whichever split this list is)"
    key_example = root_key or "data.test_root"
    root = None if root is None else Path(root)
    if fmt == "folder":
        base = root if root is not None else Path(list_file).parent
        where = (f"the features of list file {list_file} are looked up as {base}/<video>.npy: e.g. video "
                 f"{example.listed or example.video!r} -> {example.path}")
        found = _probe_root(root, (), Path(example.path.name))
        suggestion = Path("/data/my_features")
    else:
        prefix = common_dir_prefix([it.listed for it in items if it.listed is not None])
        listed = example.listed if example.listed is not None else str(example.path)
        if root is None:
            where = (f"the paths of list file {list_file} are used as written (no root is set): e.g. {listed!r} -> "
                     f"{example.path}")
        else:
            where = (f"the paths of list file {list_file} are re-rooted onto {root} (the part after "
                     f"{'/'.join(prefix) or '/'!r} is joined onto it): e.g. {listed!r} -> {example.path}")
        found = _probe_root(root, prefix, Path(*_parts(listed)[len(prefix):]))
        suggestion = (root if root is not None else Path("/data/features")).joinpath(*prefix[-2:])
    note = f" {note}" if note else ""
    if found is not None:
        return f"hint: {where}. The file is under {found}: set {key_example}={found}{note}"
    return (f"hint: {where}. If this list's features are in a folder of their own, set {key} to it (e.g. "
            f"{key_example}={suggestion}){note}")


# ------------------------------------------------------------------------------------------------------- the readers
def read_list(list_file, fmt: str, root=None, strip_prefix=None, root_key: str | None = None) -> list[CropItem]:
    """Read a list file into ``CropItem``s, in list order (see the module docstring for the formats).

    ``root_key`` is the config key that sets ``root`` (``data.test_root``): a folder list whose feature files are
    mostly missing raises a ``MissingFilesError`` that names it (the other formats' files are checked later, by
    ``FeatureStore.load``)."""
    if fmt not in LIST_FORMATS:
        raise AdplgError(f"list file {list_file}: unknown list format {fmt!r} (expected one of "
                         f"{', '.join(LIST_FORMATS)})")
    list_file = Path(list_file)
    if fmt == "folder":
        return _read_folder(list_file, root, root_key)
    problems: list[tuple[int, str]] = []  # (line number, message): every problem of the file, raised once
    entries: list[tuple[int, str, str | None]] = []  # (line number, feature path, label text or None: no label)
    if fmt == "csv":
        entries = [(ln, row["path"], row["label"]) for ln, row in _read_csv(list_file, ("path", "label"))]
    else:
        for lineno, line in read_text_lines(list_file):
            where = f"list file {list_file}, line {lineno}"
            if fmt == "sht":
                toks = line.split()
                if len(toks) > 2 or not toks[0].endswith(".npy"):
                    problems.append((lineno, f"{where}: expected '<path>.npy [label]', got {quote(line)}"))
                    continue
                entries.append((lineno, toks[0], toks[1] if len(toks) == 2 else None))
            else:
                if not line.endswith(".npy"):
                    problems.append((lineno, f"{where}: expected a path ending in .npy, got {quote(line)}"))
                    continue
                entries.append((lineno, line, None))
    unreadable, total = len(problems), len(entries) + len(problems)  # lines that are no entry of the format at all

    reroot = _Rerooter(list_file, [e[1] for e in entries], root, strip_prefix, relative_to_list=True)
    items: list[CropItem] = []
    for lineno, raw, label_str in entries:
        where = f"list file {list_file}, line {lineno}"
        try:
            path = reroot(raw)
        except ValueError as exc:
            problems.append((lineno, f"{where}: {exc}"))
            continue
        stem = _stem(raw)
        video, crop = split_crop_suffix(stem, "sht" if fmt == "sht" else "ucf")
        if fmt == "ucf":
            label = 0 if "Normal" in stem else 1
            key = stem.split("_x264")[0] if "_x264" in stem else video
        elif fmt == "xd":
            label = 0 if "_label_A" in stem else 1
            key = str(path)
        elif fmt == "sht":
            key = stem
            if label_str is None:
                label = -1
            else:
                try:
                    value = float(label_str)
                    if value not in (0.0, 1.0):
                        raise ValueError(label_str)
                    label = int(value)
                except ValueError:
                    problems.append((lineno, f"{where}: expected a label 0.0 or 1.0 in the 2nd column, "
                                             f"got {quote(label_str)}"))
                    continue
        else:  # csv
            key = stem
            try:
                label = parse_label(label_str or "")  # never None: _read_csv checks every row's columns
            except ValueError as exc:
                problems.append((lineno, f"{where}: bad label: {exc}"))
                continue
        items.append(CropItem(path=path, video=video, crop=crop, label=label, history_key=key, listed=raw))
    if problems:
        expected = {"sht": "'<path>.npy [label]' per line", "csv": "a path,label csv"}.get(fmt, "one <path>.npy "
                                                                                              "per line")
        raise line_problems_error(list_file, [m for _, m in sorted(problems, key=lambda p: p[0])], unreadable, total,
                                  fmt=fmt, expected=expected)
    return items


def _read_folder(list_file: Path, root, root_key: str | None = None) -> list[CropItem]:
    base = Path(root) if root is not None else list_file.parent
    rows = _read_csv(list_file, ("video", "label"))
    items: list[CropItem] = []
    problems = []
    missing: list[tuple[CropItem, str]] = []  # (the video as an item, its message)
    for lineno, row in rows:
        where = f"list file {list_file}, line {lineno}"
        video = row["video"]
        if video.endswith(".npy"):
            video = video[:-4]
        if not video:
            problems.append(f"{where}: expected a video name, got an empty 'video' column")
            continue
        try:
            label = parse_label(row["label"])
        except ValueError as exc:
            problems.append(f"{where}: bad label: {exc}")
            continue
        path = base / f"{video}.npy"
        if not path.is_file():
            problems.append(f"{path}: feature file of video {video!r} ({where}) not found (expected an existing file)")
            missing.append((CropItem(path=path, video=video, crop=0, label=label, history_key=video,
                                     listed=row["video"]), problems[-1]))
            continue
        try:
            shape = tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a user-data problem
            reason = npy_failure_reason(path, exc)
            problems.append(f"{path}: cannot read the .npy header of video {video!r} ({where}): {reason}")
            continue
        if len(shape) == 2:
            items.append(CropItem(path=path, video=video, crop=0, label=label, history_key=video))
        elif len(shape) == 3:
            for c in range(shape[1]):
                items.append(
                    CropItem(path=path, video=video, crop=c, label=label, history_key=f"{video}__{c}", array_index=c)
                )
        else:
            problems.append(
                f"{path}: video {video!r} ({where}): expected a [T, D] or [T, C, D] array, got shape {shape}"
            )
    if missing and many_missing(len(missing), len(rows)):
        hint = missing_root_hint(missing[0][0], [], list_file, root, root_key, fmt="folder")
        raise MissingFilesError(problems, [m for _, m in missing], len(rows), f"list file {list_file}", hint)
    if problems:
        raise LineProblemsError(problems, context=f"list file {list_file}")
    return items


def group_videos(items) -> list[VideoItem]:
    """Group consecutive crops into videos, keeping list order. Crops of a video must be contiguous and agree on
    the label; otherwise an ``AdplgError`` names the video."""
    videos: list[VideoItem] = []
    current: list[CropItem] = []
    seen: dict[str, int] = {}
    problems = []

    def flush():
        if not current:
            return
        name = current[0].video
        labels = sorted({c.label for c in current})
        if len(labels) > 1:
            problems.append(
                f"video {name!r} ({current[0].path}): crops disagree on the label: expected one label, got {labels}"
            )
        videos.append(VideoItem(name=name, label=current[0].label, crops=tuple(current)))

    for pos, item in enumerate(items):
        if current and item.video == current[0].video:
            current.append(item)
            continue
        flush()
        if item.video in seen:
            problems.append(
                f"video {item.video!r}: crops are not contiguous (expected all its crops together, found more at "
                f"item {pos} ({item.path}) after other videos)"
            )
        seen[item.video] = pos
        current = [item]
    flush()
    if problems:
        raise DataValidationError(problems, context="grouping crops into videos")
    return videos
