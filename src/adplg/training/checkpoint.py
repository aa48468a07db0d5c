"""Checkpoints: a safetensors file of tensors (both branches, pseudo-label history, optimizer moments, RNG states)
plus a JSON sidecar (config, step, metrics, versions, data manifest, optimizer hyper-parameters). Every file is
written to a temporary name and renamed, so a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from adplg.errors import AdplgError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the permissions of a plain open()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


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


def versions() -> dict[str, Any]:
    """Versions of everything that can change a result."""
    import numpy
    import sklearn

    import adplg

    commit = None
    try:
        repo = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"adplg": adplg.__version__, "git_commit": commit, "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": numpy.__version__, "sklearn": sklearn.__version__,
            "platform": platform.platform(), "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def _flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars, "ids": list(state["state"].keys())}


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for pid in meta["ids"]:
        slots = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{prefix}.{pid}.")}
        slots.update(meta["scalars"].get(str(pid), {}))
        state[int(pid)] = slots
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, *, net_v: torch.nn.Module, net_s: torch.nn.Module, step: int, config: dict,
                    metrics: dict | None = None, optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    scheduler: Any = None, extra_tensors: dict[str, torch.Tensor] | None = None,
                    extra_meta: dict | None = None) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the safetensors path."""
    path = Path(path).with_suffix(".safetensors")
    tensors = {f"net_v.{k}": v.detach().cpu().contiguous() for k, v in net_v.state_dict().items()}
    tensors.update({f"net_s.{k}": v.detach().cpu().contiguous() for k, v in net_s.state_dict().items()})
    meta: dict[str, Any] = {"format": "adplg-checkpoint-1", "step": step, "config": config,
                            "metrics": metrics or {}, "versions": versions(), **(extra_meta or {})}
    for name, optimizer in (optimizers or {}).items():
        opt_tensors, opt_meta = _flatten_optimizer(f"optim_{name}", optimizer)
        tensors.update(opt_tensors)
        meta[f"optim_{name}"] = opt_meta
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
    blob = save(tensors, metadata={"format": "adplg-checkpoint-1"})
    atomic_write_bytes(path, blob)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str))
    return path


OFFICIAL_SUFFIXES = (".pkl", ".pth", ".pt")  # the authors' released checkpoints


def checkpoint_file(path: Path | str) -> Path:
    """The weights file a checkpoint argument names: a run directory -> its ``checkpoints/last.safetensors`` (or a
    ``last.safetensors`` inside it); ``<name>``, ``<name>.json`` or ``<name>.safetensors`` -> ``<name>.safetensors``;
    the authors' ``.pkl`` / ``.pth`` / ``.pt`` files as given."""
    path = Path(path)
    if path.is_dir():
        latest = path / "checkpoints" / "last.safetensors"
        return latest if latest.exists() else path / "last.safetensors"
    return path if path.suffix in OFFICIAL_SUFFIXES else path.with_suffix(".safetensors")


class Checkpoint:
    """A loaded checkpoint: ``tensors`` by prefix and the JSON ``meta``."""

    def __init__(self, path: Path):
        path = checkpoint_file(path)
        sidecar = path.with_suffix(".json")
        for f in (path, sidecar):
            if not f.is_file():
                raise AdplgError(f"checkpoint file not found: {f} (expected <name>.safetensors with its .json sidecar)")
        try:
            self.tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise AdplgError(f"checkpoint {path} is unreadable or truncated: {exc}") from None
        try:
            self.meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise AdplgError(f"checkpoint sidecar {sidecar} is not valid JSON: {exc}") from None
        self.path = path

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def optimizer_state(self, name: str) -> dict:
        return _unflatten_optimizer(f"optim_{name}", self.tensors, self.meta[f"optim_{name}"])
