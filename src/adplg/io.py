"""Generic file IO: atomic writes (a temporary file in the same folder, fsync, rename), streamed file hashes, and the
output-path checks every command runs before it computes anything (:func:`check_output_dir`,
:func:`check_output_file`)."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path

from adplg.errors import AdplgError

_UMASK = os.umask(0)
os.umask(_UMASK)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


class OutputError(AdplgError, OSError):
    """A file or folder adplg was asked to write cannot be written (disk full, no permission, a file where a folder
    is needed...). An :class:`AdplgError` (the CLI prints one line and exits 2) and an ``OSError`` (``errno`` is the
    cause's), so code that catches ``OSError`` around a write still catches it."""

    def __init__(self, message: str, cause_errno: int | None = None):
        super().__init__(message)
        self.errno = cause_errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _reason(exc: OSError) -> str:
    """What went wrong, in words, for an ``OSError`` of a write."""
    text = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        return f"the disk is full or over its quota ({text}); free some space or choose another location"
    if exc.errno in _NO_PERMISSION:
        return f"permission denied ({text}); choose a location you can write to"
    return text


def _write_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {_reason(exc)}; an earlier {path.name} there is left as it was",
                       exc.errno)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and renamed over ``path``:
    readers see the old file or the new one, never a part. A write that fails (a full disk, no permission...) raises
    :class:`OutputError` naming ``path``, with the temporary file removed and an existing ``path`` untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the permissions of a plain open()
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            if isinstance(exc, IsADirectoryError) or path.is_dir():
                raise OutputError(f"cannot write {path}: it is a folder; expected a file (or no file) there",
                                  exc.errno) from exc
            raise _write_error(path, exc) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode())


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files beside ``path`` (``.<name>.<random>.tmp``) that :func:`atomic_write_bytes` calls
    killed before their rename left behind. Only for a file that no other process is writing (a resumed job about to
    write it again)."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ output checks
def _not_a_folder(path: Path, what: str) -> Path | None:
    """The first of ``path`` and its ancestors that exists but is not a folder, or None."""
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return None if p.is_dir() else p
    return None


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before any compute, that ``path`` can be used as an output folder: it is a folder or can be created
    as one, and a file can be created in it. Folders made for the check are removed again and the probe file too,
    so nothing is left behind. Raises :class:`OutputError` (``what`` and ``path`` named, with what was expected).
    Returns ``path`` as a :class:`Path`."""
    path = Path(path)
    blocker = _not_a_folder(path, what)
    if blocker == path:
        raise OutputError(f"{what} {path}: it is a file; expected a folder (or a path that does not exist yet)",
                          errno.ENOTDIR)
    if blocker is not None:
        raise OutputError(f"{what} {path}: cannot be created because {blocker} is a file; expected a folder there",
                          errno.ENOTDIR)
    created = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".adplg-write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {path}: not writable: {_reason(exc)}; expected a folder you can write to",
                          exc.errno) from None
    finally:
        for p in created:  # deepest first; a folder something else wrote into meanwhile stays
            with suppress(OSError):
                p.rmdir()
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Check, before any compute, that a file can be written at ``path`` (atomically, through a temporary file in
    its folder): ``path`` is not a folder, and its folder is (or can be created as) a writable folder. Nothing is left
    behind. Raises :class:`OutputError` naming ``what`` and ``path``. Returns ``path`` as a :class:`Path`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path}: it is a folder; expected a file name (a file there is replaced)",
                          errno.EISDIR)
    blocker = _not_a_folder(path.parent, what)
    if blocker is not None:
        raise OutputError(f"{what} {path}: cannot be written because {blocker} is a file; expected a folder there",
                          errno.ENOTDIR)
    check_output_dir(path.parent, f"{what} {path}: its folder")
    return path


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed in chunks (weights files can be large). For a folder (a Hugging Face CLIP
    folder): the sha256 over every file's relative path and contents, in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | Path, where: str, expected: str):
    """The JSON value in ``path``; an :class:`AdplgError` starting with ``where`` (e.g. "verdicts file <path>") when
    the file is missing, unreadable or not JSON, saying what was expected (e.g. "the file as adplg score wrote it")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdplgError(f"{where}: not found (expected {expected})") from None
    except json.JSONDecodeError as exc:
        raise AdplgError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); expected "
                         f"{expected}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdplgError(f"{where}: cannot be read ({type(exc).__name__}: {exc})") from None


def plain_file_name(name: object) -> bool:
    """``name`` is a plain file name (e.g. a video's name in adplg's outputs): a non-empty string with no path
    separator, not ``.`` or ``..``, no NUL. Names read back from files are checked with it, so they stay in their
    folder."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name)


# ------------------------------------------------------------------------------------------ output folder owners
OUTPUT_MARKER = ".adplg-output"  # in a folder adplg created or first filled: the command's name, one line


def output_owner(folder: str | Path) -> str | None:
    """The command named by ``<folder>/.adplg-output`` (the adplg command that created or first filled the folder),
    or None when the folder has no marker (or it cannot be read)."""
    try:
        return (Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def check_output_owner(path: str | Path, command: str, writes: tuple[str, ...] = ("*",), *,
                       what: str = "output folder", overwrite: bool = False) -> Path:
    """:func:`check_output_dir`, then refuse (nothing is written) a folder adplg's ``command`` did not fill: one
    whose marker names another command, or one without a marker holding a file this command would write (``writes``:
    glob patterns of its output names; a file or folder matching one is never overwritten unless the user allows it).
    An empty folder, a new one and an earlier output folder of the same ``command`` are accepted, so re-runs and
    resumes keep working. ``overwrite=True`` accepts any folder. Raises :class:`AdplgError` with ``parameter=
    "overwrite"`` hints; returns ``path`` as a :class:`Path`."""
    path = check_output_dir(path, what)
    owner = output_owner(path)
    if overwrite or owner == command or not path.is_dir():
        return path
    if owner is not None:
        raise AdplgError(f"{what} {path}: its {OUTPUT_MARKER} says `adplg {owner}` wrote it; expected an empty "
                         f"folder or one an earlier `adplg {command}` filled; refusing to write there (nothing was "
                         "overwritten): pick another folder, or allow overwriting (the overwrite option)")
    clashes = sorted({p for pattern in writes for p in path.glob(pattern) if p.name != OUTPUT_MARKER})
    if clashes:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        raise AdplgError(f"{what} {path}: holds {clashes[0]}{more}, which `adplg {command}` would overwrite, but no "
                         f"{OUTPUT_MARKER} of an earlier `adplg {command}`, so adplg did not write them; expected an "
                         "empty folder or one an earlier run filled; refusing to write there (nothing was overwritten):"
                         " pick another folder, or allow overwriting (the overwrite option)")
    return path


def mark_output_dir(path: str | Path, command: str) -> Path:
    """Create ``path`` when missing and write its ``.adplg-output`` marker (``command``) when it has none or another
    command's (after :func:`check_output_owner` accepted it): the folder is now ``command``'s output folder. Call it
    just before a command first writes into the folder. Returns ``path`` as a :class:`Path`."""
    path = Path(path)
    if output_owner(path) != command:
        atomic_write_text(path / OUTPUT_MARKER, command + "\n")
    return path


def read_secret(what: str, *, env: str | None = None, file: str | Path | None = None, env_parameter: str,
                file_parameter: str) -> str | None:
    """A secret (``what``: "the webhook secret", "the MQTT password" ...) from the environment variable ``env`` or the
    first line of ``file`` (stripped), None when neither is named. An unset or empty variable, or an unreadable,
    missing or empty file, is an :class:`AdplgError` about ``env_parameter`` / ``file_parameter`` naming the variable
    or the file, never the secret."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise AdplgError(f"the environment variable {env} is {'empty' if env in os.environ else 'not set'}; "
                             f"expected {what} in it", parameter=env_parameter)
        return value
    if file:
        path = Path(file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise AdplgError(f"{path}: cannot be read ({reason}); expected a file holding {what}",
                             parameter=file_parameter) from None
        if not lines or not lines[0].strip():
            raise AdplgError(f"{path}: expected {what} on its first line, got an empty line", parameter=file_parameter)
        return lines[0].strip()
    return None
