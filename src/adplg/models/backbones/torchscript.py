"""Reading the tensors of a TorchScript archive (such as OpenAI's CLIP ``ViT-B-16.pt``) without running anything it
holds.

``torch.jit.load`` rebuilds the scripted modules and runs their TorchScript ``__setstate__`` methods, so a hostile
archive runs code on load; ``torch.load(..., weights_only=True)`` refuses TorchScript archives outright. This module
reads the archive as the zip it is instead: ``<root>/data.pkl`` (the pickled module objects, whose attributes are the
parameters, buffers and submodules) plus the raw storage blobs ``<root>/data/<key>``. ``data.pkl`` is read by an
unpickler that only knows the few globals a tree of modules holding tensors needs; the archive's TorchScript code
(``<root>/code/``) and ``constants.pkl`` are never read. Anything else in the pickle (an unknown global, a module
with a custom ``__setstate__``) is refused with an :class:`AdplgError` naming the file.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adplg.errors import AdplgError

# The typed storage classes the TorchScript pickler names, and the element type of each.
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "torch.DoubleStorage": torch.float64,
    "torch.FloatStorage": torch.float32,
    "torch.HalfStorage": torch.float16,
    "torch.BFloat16Storage": torch.bfloat16,
    "torch.LongStorage": torch.int64,
    "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
    "torch.ComplexFloatStorage": torch.complex64,
    "torch.ComplexDoubleStorage": torch.complex128,
}

SCRIPT_CLASS_PREFIX = "__torch__"


class RefusedArchive(Exception):
    """Raised while reading ``data.pkl`` when it holds something other than modules, tensors and plain values."""


class DamagedArchive(Exception):
    """Raised when the archive's entries do not fit together (a missing or too short storage blob, no data.pkl)."""


class StorageType:
    """Stand-in for a ``torch.<Type>Storage`` class named in ``data.pkl``: only its element type is kept."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name = name
        self.dtype = dtype


class ArchiveStorage:
    """One storage blob of the archive (``<root>/data/<key>``), as raw bytes and the element type they hold."""

    __slots__ = ("key", "dtype", "untyped")

    def __init__(self, key: str, dtype: torch.dtype, untyped: torch.UntypedStorage):
        self.key = key
        self.dtype = dtype
        self.untyped = untyped


class ScriptObject:
    """Stand-in for an object of a TorchScript class (``__torch__.*``, e.g. a scripted module): it keeps the pickled
    attributes and runs none of the class's methods. Subclassed once per class name (see :func:`script_class`)."""

    type_name = SCRIPT_CLASS_PREFIX

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise RefusedArchive(f"{self.type_name} has a custom state ({type(state).__name__}) that only its "
                                 f"TorchScript __setstate__ (which torch.jit.load would run) can restore; expected "
                                 f"modules whose state is a dict of attributes")
        self.attributes = state

    @property
    def attribute_values(self) -> dict[str, Any]:
        """The pickled attributes; empty when the object was never given a state."""
        return getattr(self, "attributes", {})


_script_classes: dict[str, type[ScriptObject]] = {}


def script_class(qualified_name: str) -> type[ScriptObject]:
    """The :class:`ScriptObject` subclass standing in for the TorchScript class ``qualified_name``."""
    if qualified_name not in _script_classes:
        _script_classes[qualified_name] = type("ScriptObject", (ScriptObject,), {"type_name": qualified_name})
    return _script_classes[qualified_name]


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                   backward_hooks: Any, metadata: Any = None) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a view of ``size`` / ``stride`` (element units) into an
    archive storage, starting at element ``storage_offset``. ``set_`` refuses a view that does not fit the blob."""
    def is_ints(values: Any) -> bool:
        return isinstance(values, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                 for v in values)

    if not isinstance(storage, ArchiveStorage):
        raise RefusedArchive(f"a tensor is built from a {type(storage).__name__}, expected a storage of the archive")
    if not (is_ints((storage_offset,)) and is_ints(size) and is_ints(stride) and len(size) == len(stride)):
        raise RefusedArchive(f"a tensor has a malformed layout: offset {storage_offset!r:.40}, size {size!r:.80}, "
                             f"stride {stride!r:.80}")
    if not isinstance(requires_grad, bool) or backward_hooks or metadata:
        raise RefusedArchive(f"a tensor has requires_grad {requires_grad!r:.40}, backward hooks {backward_hooks!r:.40} "
                             f"and metadata {metadata!r:.40}; expected a bool, no hooks and no metadata")
    needed = 0 if 0 in size else storage_offset + 1 + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
    itemsize = torch.empty(0, dtype=storage.dtype).element_size()
    if needed * itemsize > storage.untyped.nbytes():
        raise DamagedArchive(f"storage blob data/{storage.key} holds {storage.untyped.nbytes()} bytes, a tensor of "
                             f"size {size} at offset {storage_offset} needs {needed * itemsize}")
    # requires_grad is dropped: the tensors are read as a state_dict, to be copied into a model.
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, storage_offset, size, stride)


def same_value(value: Any, *_type_tag: Any) -> Any:
    """Stand-in for ``torch.jit._pickle.build_*list`` and ``restore_type_tag``, which return their value."""
    return value


SAFE_GLOBALS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor_v2": rebuild_tensor,
    "collections.OrderedDict": OrderedDict,
    "torch.jit._pickle.build_intlist": same_value,
    "torch.jit._pickle.build_doublelist": same_value,
    "torch.jit._pickle.build_boollist": same_value,
    "torch.jit._pickle.build_tensorlist": same_value,
    "torch.jit._pickle.restore_type_tag": same_value,
}


class TensorTreeUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` knowing only :data:`SAFE_GLOBALS`, the storage types and stand-ins
    for TorchScript classes; storage blobs are read from ``archive`` under ``<root>/data/``."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.root = root
        self.storages: dict[str, ArchiveStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        """The class or function a pickle names, from the allow-list only; anything else is refused."""
        qualified = f"{module}.{name}"
        if module == SCRIPT_CLASS_PREFIX or module.startswith(SCRIPT_CLASS_PREFIX + "."):
            return script_class(qualified)
        if qualified in STORAGE_DTYPES:
            return StorageType(qualified, STORAGE_DTYPES[qualified])
        if qualified in SAFE_GLOBALS:
            return SAFE_GLOBALS[qualified]
        raise RefusedArchive(f"data.pkl refers to {qualified}, expected only scripted modules, tensors and "
                             f"plain values")

    def persistent_load(self, pid: Any) -> ArchiveStorage:
        """The storage a pickled tensor refers to, read from the archive's ``data/<key>`` blob."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)):
            raise RefusedArchive(f"data.pkl has a persistent id {pid!r:.80}, expected ('storage', <storage type>, "
                                 f"<key>, <location>, <size>)")
        storage_type, key = pid[1], pid[2]
        if key not in self.storages:
            blob_name = f"{self.root}/data/{key}"
            try:
                blob = bytearray(self.archive.read(blob_name))
            except KeyError:
                raise DamagedArchive(f"storage blob {blob_name} is missing") from None
            untyped = (torch.frombuffer(blob, dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8))
            self.storages[key] = ArchiveStorage(key, storage_type.dtype, untyped.untyped_storage())
        return self.storages[key]


def archive_root(archive: zipfile.ZipFile) -> str:
    """The top folder of a TorchScript archive: the one holding ``data.pkl``."""
    roots = [name[: -len("/data.pkl")] for name in archive.namelist()
             if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(roots) != 1:
        raise DamagedArchive(f"expected one <root>/data.pkl entry, got {len(roots)}")
    return roots[0]


def module_tensors(root: Any) -> dict[str, Tensor]:
    """The state_dict of an unpickled module tree: every tensor attribute, named by its dotted attribute path
    (``visual.conv1.weight``). Plain attributes (``training``, ints, lists) are left out."""
    if not isinstance(root, ScriptObject):
        raise RefusedArchive(f"data.pkl holds a {type(root).__name__}, expected a scripted module")
    state: dict[str, Tensor] = {}
    seen: set[int] = set()
    pending: list[tuple[str, ScriptObject]] = [("", root)]
    while pending:
        prefix, obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for name, value in obj.attribute_values.items():
            if isinstance(value, Tensor):
                state[prefix + name] = value.detach()
            elif isinstance(value, ScriptObject):
                pending.append((f"{prefix}{name}.", value))
    return state


def read_torchscript_state(path: Path, what: str) -> dict[str, Tensor]:
    """The parameters and buffers of the TorchScript archive at ``path`` as a CPU state_dict ``{key: tensor}``
    (the keys and values of ``torch.jit.load(path).state_dict()``), read without running the archive's code.

    Raises :class:`AdplgError` naming ``what`` and the file when the archive is damaged or holds anything other than
    modules, tensors and plain values."""
    try:
        with zipfile.ZipFile(path) as archive:
            root = archive_root(archive)
            byteorder_name = f"{root}/byteorder"
            if byteorder_name in archive.namelist():
                byteorder = archive.read(byteorder_name).decode("ascii", "replace").strip()
                if byteorder != sys.byteorder:
                    raise RefusedArchive(f"expected {sys.byteorder}-endian tensors, got {byteorder}-endian")
            return module_tensors(TensorTreeUnpickler(archive.read(f"{root}/data.pkl"), archive, root).load())
    except RefusedArchive as exc:
        raise AdplgError(f"{what} file {path}: TorchScript archive refused: {exc}; adplg reads only the tensors of "
                         f"such archives and never runs their code") from None
    except DamagedArchive as exc:
        raise AdplgError(f"{what} file {path}: damaged TorchScript archive: {exc}; expected an intact archive such "
                         f"as OpenAI's CLIP ViT-B-16.pt") from None
    # A damaged zip or pickle fails with many exception types (BadZipFile, UnpicklingError, EOFError, RuntimeError).
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
        raise AdplgError(f"{what} file {path}: cannot be read as a TorchScript archive ({type(exc).__name__}: "
                         f"{detail}); expected an intact archive such as OpenAI's CLIP ViT-B-16.pt") from exc
