"""What is wrong with a ``.npy`` file, told from its header alone and without numpy's advice to load the file
"unsafely" with ``allow_pickle`` (which would run code from the file): not a ``.npy`` file, an unsupported format
version, a corrupt header, an object array, or data shorter than the header promises."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NPY_MAGIC = np.lib.format.MAGIC_PREFIX
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
ZIP_MAGIC = b"PK"

# Sentences of numpy's messages that advise loading the file with pickling enabled.
_UNSAFE_ADVICE = re.compile(r"allow_pickle|pickle\.load|unsafe|trust", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class NpyHeader:
    """The header of a ``.npy`` file: array ``shape``, ``dtype``, and the byte offset where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int

    @property
    def data_bytes(self) -> int:
        """The size the data must have: prod(shape) * itemsize."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True, kw_only=True)
class NpyProblem:
    """What is wrong with a ``.npy`` file: ``kind`` is ``"unreadable"`` (not a .npy file, unsupported version,
    corrupt header), ``"dtype"`` (an object array) or ``"truncated"``; ``reason`` says expected vs got."""

    kind: str
    reason: str


def numpy_reason(exc: BaseException) -> str:
    """``exc``'s message on one line, without the sentences that advise loading the file with pickling enabled."""
    text = " ".join(str(exc).split())
    sentences = [s for s in re.split(r"(?<=\.)\s+", text) if s and not _UNSAFE_ADVICE.search(s)]
    return " ".join(sentences) or "no details"


def read_npy_header(path: Path) -> NpyHeader | NpyProblem:
    """The header of the ``.npy`` file at ``path``, or the :class:`NpyProblem` that keeps it from being one.
    A zip archive (``.npz``) is neither: it gives an ``"unreadable"`` problem naming it."""
    with open(path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC) + 2)
        expected = f"a .npy header starting with {NPY_MAGIC!r}"
        if not start:
            return NpyProblem(kind="unreadable", reason=f"not a .npy file: expected {expected}, got an empty file")
        if start.startswith(ZIP_MAGIC):
            return NpyProblem(kind="unreadable", reason="expected a .npy array, got an .npz archive")
        if not start.startswith(NPY_MAGIC) or len(start) < len(NPY_MAGIC) + 2:
            return NpyProblem(kind="unreadable", reason=f"not a .npy file: expected {expected}, got {start!r}")
        version = (start[-2], start[-1])
        if version not in NPY_VERSIONS:
            return NpyProblem(kind="unreadable", reason=f"unsupported .npy format: expected version 1.0, 2.0 or "
                                                        f"3.0, got {version[0]}.{version[1]}")
        try:
            # Version 3.0 differs from 2.0 only in allowing utf-8 field names in the header.
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for a damaged header
            return NpyProblem(kind="unreadable", reason=f"corrupt .npy header: expected a dict with descr, "
                                                        f"fortran_order and shape, got an unreadable one "
                                                        f"({numpy_reason(exc)})")
        header = NpyHeader(shape=tuple(int(n) for n in shape), dtype=dtype, data_offset=handle.tell())
    if dtype.hasobject:
        return NpyProblem(kind="dtype", reason=f"wrong dtype: expected a numeric array, got an array of Python "
                                               f"objects (dtype {dtype}, shape {header.shape}), which is never read")
    return header


def npy_problem(path: Path) -> NpyProblem | None:
    """What keeps the file at ``path`` from being read as a ``.npy`` array without reading its data (see
    :func:`read_npy_header`, plus a file shorter than its header promises), or None."""
    header = read_npy_header(path)
    if isinstance(header, NpyProblem):
        return header
    expected = header.data_offset + header.data_bytes
    actual = Path(path).stat().st_size
    if actual >= expected:
        return None
    return NpyProblem(kind="truncated", reason=f"truncated, cannot be read as a .npy array: expected {expected} "
                                               f"bytes (header: shape {header.shape}, {header.dtype}), got {actual}")


def npy_size_problem(path: Path) -> str | None:
    """``"<path>: truncated, ..."`` when the ``.npy`` file is shorter than ``header offset + prod(shape) *
    itemsize`` (a truncated copy or download), None otherwise, and also None when the header itself is unreadable
    (see :func:`npy_problem` for that)."""
    problem = npy_problem(path)
    return f"{path}: {problem.reason}" if problem is not None and problem.kind == "truncated" else None


def npy_failure_reason(path: Path, exc: BaseException) -> str:
    """Why ``np.load(path)`` raised ``exc``, on one line and without numpy's advice to load unsafely: the
    :func:`npy_problem` of the file when there is one, else the exception's own reason."""
    try:
        problem = npy_problem(path)
    except OSError:
        problem = None
    if problem is not None:
        return problem.reason
    return f"{type(exc).__name__}: {numpy_reason(exc)}"
