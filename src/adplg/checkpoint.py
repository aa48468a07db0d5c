"""Checkpoints: a safetensors file of tensors (both branches, pseudo-label history, optimizer moments, RNG states)
plus a JSON sidecar (config, step, metrics, versions, data manifest, optimizer hyper-parameters). Every file is
written to a temporary name and renamed, so a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from adplg.errors import AdplgError
from adplg.io import atomic_write_bytes, atomic_write_text
from adplg.runtime import versions


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
