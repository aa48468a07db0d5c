"""Feature loading with up-front validation, and the training-time resampling to a fixed number of segments.

``FeatureStore.load`` reads every crop file once (or memory-maps it), checks it, and reports *all* problems of the
load in one ``DataValidationError``; nothing is read from disk after that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adplg.data.lists import CropItem, MissingFilesError, many_missing
from adplg.data.npy_files import npy_failure_reason, npy_problem, npy_size_problem
from adplg.errors import AdplgError, DataValidationError

__all__ = [
    "FeatureStore",
    "resample_segments",
    "RESAMPLE_MODES",
    "FileProblem",
    "FeatureFileCheck",
    "FEATURE_PROBLEM_KINDS",
    "check_feature_file",
    "check_video_crops",
    "count_nonfinite",
    "npy_size_problem",
]

RESAMPLE_MODES = ("mean", "pad")

_FINITE_CHUNK = 1 << 22  # elements per chunk when counting non-finite values (bounds memory on memory-mapped files)


def _segment_bounds(length: int, num_segments: int) -> np.ndarray:
    # The official rule: np.linspace(0, L, S + 1) truncated to integers (kept as linspace for bit-identical bounds).
    return np.linspace(0, length, num_segments + 1).astype(np.int64)


def resample_segments(feat: np.ndarray, num_segments: int = 64, mode: str = "mean") -> np.ndarray:
    """Resample a ``[L, D]`` crop to ``[num_segments, D]`` float32 (METHOD §4.1).

    ``mode="mean"`` (the official I3D rule): ``r = linspace(0, L, S + 1)`` cast to int64; segment ``i`` is the mean of
    ``feat[r_i:r_{i+1}]``, or ``feat[r_i]`` alone when ``r_i == r_{i+1}`` (so ``L < S`` repeats snippets and
    ``L == S`` is the identity).

    ``mode="pad"`` (VadCLIP's ``process_feat`` with ``is_random=False``, used by the CLIP XD loader): ``L > S`` averages
    with the same rule as ``"mean"``; ``L <= S`` keeps the ``L`` snippets and appends ``S - L`` rows of zeros.

    The segment means are accumulated in float64 and rounded once to float32 (the official per-segment ``np.mean``
    in float32 agrees to float32 rounding).
    """
    if mode not in RESAMPLE_MODES:
        raise AdplgError(f"unknown resample mode {mode!r} (expected one of {', '.join(RESAMPLE_MODES)})")
    feat = np.asarray(feat)
    if feat.ndim != 2:
        raise AdplgError(f"resample_segments: expected a [L, D] array, got shape {feat.shape}")
    length, dim = feat.shape
    if length < 1:
        raise AdplgError("resample_segments: expected at least one snippet, got L = 0")
    if num_segments < 1:
        raise AdplgError(f"resample_segments: expected num_segments >= 1, got {num_segments}")
    if mode == "pad" and length <= num_segments:
        out = np.zeros((num_segments, dim), dtype=np.float32)
        out[:length] = feat
        return out
    r = _segment_bounds(length, num_segments)
    starts = r[:-1]
    counts = np.maximum(r[1:] - starts, 1)
    # reduceat sums [r_i, r_{i+1}) and returns feat[r_i] itself where r_i == r_{i+1}: exactly the official rule.
    sums = np.add.reduceat(feat.astype(np.float64, copy=False), starts, axis=0)
    return (sums / counts[:, None]).astype(np.float32)


class FeatureStore:
    """Every crop's features read once (``np.load``, or memory-mapped with ``mmap=True``) and validated.

    ``store[i]`` is the ``[T_i, D]`` float32 array of ``store.items[i]`` (a read-only view for memory-mapped float32
    files; float16/float64 files are converted on access when memory-mapped, at load time otherwise).
    """

    def __init__(self, items: Sequence[CropItem], arrays: Sequence[np.ndarray]):
        if len(items) != len(arrays):
            raise ValueError("items and arrays must have the same length")
        self.items: list[CropItem] = list(items)
        self._arrays = list(arrays)
        self._lengths = np.array([a.shape[0] for a in self._arrays], dtype=np.int64)
        dims = {a.shape[1] for a in self._arrays}
        if len(dims) > 1:
            raise ValueError(f"arrays disagree on the feature dimension: {sorted(dims)}")
        self._dim = dims.pop() if dims else 0
        self._pooled: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i: int) -> np.ndarray:
        a = self._arrays[i]
        return a if a.dtype == np.float32 else a.astype(np.float32)

    @property
    def lengths(self) -> np.ndarray:
        """Snippet count T_i of every item, int64."""
        return self._lengths

    @property
    def feature_dim(self) -> int:
        """The feature dimension D shared by every loaded file."""
        return self._dim

    def pooled(self, num_segments: int = 64, mode: str = "mean") -> np.ndarray:
        """``[N, num_segments, D]`` float32: every crop resampled once (``resample_segments``); cached per
        ``(num_segments, mode)``, so treat the result as read-only."""
        key = (int(num_segments), mode)
        if key not in self._pooled:
            out = np.empty((len(self), num_segments, self._dim), dtype=np.float32)
            for i in range(len(self)):
                out[i] = resample_segments(self._arrays[i], num_segments, mode)
            self._pooled[key] = out
        return self._pooled[key]

    # ----------------------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        items: Sequence[CropItem],
        feature_dim: int | None = None,
        crops_per_video: int | None = None,
        mmap: bool = False,
        progress: bool = True,
        context: str = "features",
        equal_crop_lengths: bool = True,
        missing_hint: Callable[[CropItem], str] | None = None,
    ) -> FeatureStore:
        """Read and validate the feature file of every item.

        Checks, per file (``check_feature_file``, shared with ``adplg doctor``): it exists; it has a ``.npy``
        header (not another file, not ``.npz``, not an object array); it is as long as its ``.npy`` header says
        (truncation); ``np.load`` can read it (a corrupt file fails here); it is a plain
        ``.npy`` array of a float dtype; ``ndim`` is 2 (``[T, D]``), or 3 (``[T, C, D]``) for items with an
        ``array_index`` (which must be ``< C``); ``T >= 1``; the last axis equals ``feature_dim`` (when given; else
        every file must agree with the most common dimension); every value is finite (the count of NaN/Inf is
        reported). Across items (``check_video_crops``): each video has ``crops_per_video`` crops (when given) and, with
        ``equal_crop_lengths``, all crops of a video have the same T (the crop scores are averaged at test time).

        Each distinct file is read once even when several items share it. All problems are collected and raised in
        one ``DataValidationError`` whose messages name the file, the expected and the actual value. When many files
        are missing (more than ``MISSING_SHOWN``, or all), it is a ``MissingFilesError``: its message names the first
        few and counts the rest, after ``missing_hint(first missing item)`` (which root to set), given once.
        """
        items = list(items)
        if not items:
            raise AdplgError(f"{context}: no feature files to load (expected at least one item, got 0)")
        by_file: dict[Path, list[int]] = {}
        for i, it in enumerate(items):
            by_file.setdefault(Path(it.path), []).append(i)

        problems: list[str] = []
        missing: list[tuple[CropItem, str]] = []  # (the first item of a missing file, its message)
        arrays: list[np.ndarray | None] = [None] * len(items)
        file_dims: dict[Path, int] = {}
        for path, idxs in tqdm(by_file.items(), total=len(by_file), desc=f"loading {context}", unit="file",
                               disable=not progress, leave=False):
            file_items = [items[i] for i in idxs]
            check = check_feature_file(path, file_items, feature_dim, mmap)
            if not check.ok:
                problems.extend(p.message for p in check.problems)
                missing.extend((file_items[0], p.message) for p in check.problems if p.kind == "missing")
                continue
            assert check.shape is not None  # set on every file that passed its checks
            file_dims[path] = int(check.shape[-1])
            for i, a in zip(idxs, crop_arrays(check, file_items, mmap), strict=True):
                arrays[i] = a

        # feature dimension consistency when no dimension was given
        if feature_dim is None and file_dims:
            majority, _ = Counter(file_dims.values()).most_common(1)[0]
            for path, dim in file_dims.items():
                if dim != majority:
                    problems.append(
                        f"{path}: feature dimension differs from the other files: expected {majority} "
                        f"(the most common), got {dim}"
                    )
                    for i in by_file[path]:
                        arrays[i] = None

        lengths = [None if a is None else int(a.shape[0]) for a in arrays]
        problems.extend(p.message for p in check_video_crops(items, lengths, crops_per_video, equal_crop_lengths))
        if missing and many_missing(len(missing), len(by_file)):
            hint = missing_hint(missing[0][0]) if missing_hint is not None else None
            raise MissingFilesError(problems, [m for _, m in missing], len(by_file), context, hint)
        if problems:
            raise DataValidationError(problems, context=context)
        return cls(items, arrays)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ per-file checks
@dataclass(frozen=True)
class FileProblem:
    """One problem of a feature file (or of a video's crops): a ``kind`` code (see ``FEATURE_PROBLEM_KINDS``) and a
    message that names the file, the expected and the actual value."""

    kind: str
    message: str


FEATURE_PROBLEM_KINDS = {
    "missing": "feature file not found",
    "unreadable": "unreadable or corrupt file",
    "truncated": "truncated file (shorter than its .npy header says)",
    "layout": "file used both as [T, D] and as [T, C, D]",
    "ndim": "wrong number of dimensions",
    "dtype": "wrong dtype",
    "empty": "no snippets (T == 0)",
    "dim": "wrong feature dimension",
    "crop_index": "crop index out of range",
    "nonfinite": "non-finite values (NaN/Inf)",
    "crop_count": "wrong number of crops per video",
    "crop_length": "crops of a video differ in length",
}


@dataclass(kw_only=True)
class FeatureFileCheck:
    """The outcome of ``check_feature_file``: the opened array (None when it could not be opened with the expected
    number of dimensions), every problem found, and the count of non-finite values."""

    path: Path
    array: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    problems: list[FileProblem] = field(default_factory=list)
    nonfinite: int = 0

    @property
    def ok(self) -> bool:
        """True when the file has no problem."""
        return not self.problems

    @property
    def num_snippets(self) -> int | None:
        """T (the first axis) when the file could be opened as an array, else None."""
        return int(self.shape[0]) if self.shape else None

    def add(self, kind: str, message: str) -> None:
        """Record a problem of the file (``kind``: a problem kind, ``message``: file, expected and actual value)."""
        self.problems.append(FileProblem(kind, message))


def count_nonfinite(arr: np.ndarray) -> int:
    """NaN/Inf count of a float array, read in chunks (bounded memory on memory-mapped files)."""
    flat = arr.reshape(-1, order="A")  # a view for C- and Fortran-ordered files
    nonfinite = 0
    for s in range(0, flat.size, _FINITE_CHUNK):
        chunk = flat[s:s + _FINITE_CHUNK]
        nonfinite += chunk.size - int(np.count_nonzero(np.isfinite(chunk)))
    return nonfinite


def check_feature_file(path, file_items: Sequence[CropItem], feature_dim: int | None = None,
                       mmap: bool = True) -> FeatureFileCheck:
    """Open one feature file (memory-mapped with ``mmap=True``) and check it for the crop items that use it.

    Checks in order, stopping at the first failure of the first group: exists; a readable ``.npy`` header, not
    ``.npz``, not an object array, and not truncated (its size vs its header; see
    :func:`adplg.data.npy_files.npy_problem`); ``np.load`` can read it; the items agree on ``[T, D]`` vs
    ``[T, C, D]``; ``ndim`` matches. Then all of: float dtype; ``T >= 1``; last axis == ``feature_dim`` (when
    given); crop indices ``< C``. Only when all of these pass: every value is finite (counted in chunks)."""
    path = Path(path)
    check = FeatureFileCheck(path=path)
    if not path.is_file():
        what = "is a folder" if path.exists() else "not found"
        check.add("missing", f"{path}: feature file {what} (expected an existing .npy file; "
                             f"video {file_items[0].video!r})")
        return check
    problem = npy_problem(path)
    if problem is not None:
        check.add(problem.kind, f"{path}: {problem.reason}")
        return check
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-data problem
        check.add("unreadable", f"{path}: cannot be read as a .npy array: {npy_failure_reason(path, exc)}")
        return check
    if not isinstance(arr, np.ndarray):  # an .npz archive the header check did not recognise
        if hasattr(arr, "close"):
            arr.close()
        check.add("unreadable", f"{path}: expected a .npy array, got an .npz archive")
        return check
    check.shape = tuple(int(n) for n in arr.shape)
    indexed = [it.array_index is not None for it in file_items]
    if any(indexed) and not all(indexed):
        check.add("layout", f"{path}: used both as a [T, D] file and as a [T, C, D] file by the list")
        return check
    want_ndim = 3 if indexed[0] else 2
    if arr.ndim != want_ndim:
        want_shape = "[T, C, D]" if want_ndim == 3 else "[T, D]"
        check.add("ndim", f"{path}: wrong number of dimensions: expected {want_ndim} ({want_shape}), got {arr.ndim} "
                          f"(shape {arr.shape})")
        check.shape = None  # T is not meaningful for an array of the wrong rank
        return check
    check.array = arr
    _check_opened_array(check, file_items, feature_dim)
    return check


def _check_opened_array(check: FeatureFileCheck, file_items: Sequence[CropItem], feature_dim: int | None) -> None:
    """The checks of an array of the expected rank: dtype, T, feature dimension, crop indices, then finiteness."""
    arr, path = check.array, check.path
    assert arr is not None  # called once the array is opened with the expected rank
    is_float = np.issubdtype(arr.dtype, np.floating)
    if not is_float:
        check.add("dtype", f"{path}: wrong dtype: expected a float dtype (float16/32/64), got {arr.dtype}")
    if arr.shape[0] < 1:
        check.add("empty", f"{path}: no snippets: expected T >= 1, got shape {arr.shape}")
    dim = int(arr.shape[-1])
    if feature_dim is not None and dim != feature_dim:
        check.add("dim", f"{path}: wrong feature dimension: expected {feature_dim}, got {dim} (shape {arr.shape})")
    if arr.ndim == 3:
        # every item has an array_index here (a [T, C, D] file); the None test narrows its type
        bad = sorted({it.array_index for it in file_items
                      if it.array_index is not None and not 0 <= it.array_index < arr.shape[1]})
        if bad:
            check.add("crop_index", f"{path}: crop index out of range: expected < {arr.shape[1]} (C of shape "
                                    f"{arr.shape}), got {bad}")
    if check.ok and is_float:
        check.nonfinite = count_nonfinite(arr)
        if check.nonfinite:
            check.add("nonfinite", f"{path}: non-finite values: expected all finite, got {check.nonfinite} NaN/Inf "
                                   f"of {arr.size}")


def crop_arrays(check: FeatureFileCheck, file_items: Sequence[CropItem], mmap: bool) -> list[np.ndarray]:
    """One ``[T, D]`` array per item of a checked file (a view into a memory-mapped file, float32 copies else)."""
    assert check.array is not None, f"{check.path}: crop_arrays needs a file whose checks passed"
    out = []
    for it in file_items:
        a = check.array if it.array_index is None else check.array[:, it.array_index, :]
        if not mmap:
            a = np.ascontiguousarray(a, dtype=np.float32)
        out.append(a)
    return out


def item_name(item: CropItem) -> str:
    """How a crop is named in messages: its file, with ``[:, c]`` for a crop of a ``[T, C, D]`` file."""
    return str(item.path) if item.array_index is None else f"{item.path}[:, {item.array_index}]"


def check_video_crops(items: Sequence[CropItem], lengths: Sequence[int | None], crops_per_video: int | None,
                      equal_crop_lengths: bool = True) -> list[FileProblem]:
    """Per video (items grouped by ``item.video``): the crop count equals ``crops_per_video`` (when given) and, with
    ``equal_crop_lengths``, all crops with a known length (``lengths[i]`` not None) have the same T."""
    per_video: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        per_video.setdefault(it.video, []).append(i)
    problems = []
    for video, idxs in per_video.items():
        first = items[idxs[0]].path
        if crops_per_video is not None and len(idxs) != crops_per_video:
            problems.append(FileProblem("crop_count", f"{first}: video {video!r} has the wrong number of crops: "
                                                      f"expected {crops_per_video}, got {len(idxs)}"))
        if equal_crop_lengths:
            lens = {item_name(items[i]): lengths[i] for i in idxs if lengths[i] is not None}
            if len(set(lens.values())) > 1:
                ref = next(iter(lens.values()))
                odd = ", ".join(f"{p}: {n}" for p, n in lens.items() if n != ref)
                problems.append(FileProblem("crop_length", f"{first}: crops of video {video!r} differ in length: "
                                                           f"expected T = {ref} for every crop, got {odd}"))
    return problems
