"""Checkpoints: a safetensors file of tensors (both branches, pseudo-label history, optimizer moments, RNG states)
plus a JSON sidecar (config, step, metrics, versions, data manifest, optimizer hyper-parameters). Every file is
written to a temporary name and renamed, so a crash never leaves a half-written file.

The two files of one checkpoint are tied together: the weights file is written first, with a random
``checkpoint_id`` and the ``step`` in its safetensors metadata; the sidecar then records the same ``checkpoint_id``
and ``step`` plus the ``weights_sha256`` and ``weights_bytes`` of the weights file. A crash between the two writes
leaves new weights beside the previous sidecar; :class:`Checkpoint` compares the ids (a cheap header read) and
refuses such a torn pair, naming the newest checkpoint in the same folder that does verify.
:class:`Checkpoint` also checks the weights' sha256 on every load (:meth:`Checkpoint.verify`: one more read of the
file, which a damaged byte would otherwise pass silently). Checkpoints written before the id existed (no id in either
file) load without a check."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from adplg.errors import AdplgError
from adplg.io import atomic_write_bytes, atomic_write_text, file_sha256
from adplg.models.backbones.weights import short_reason
from adplg.runtime import versions

log = logging.getLogger("adplg")

FORMAT = "adplg-checkpoint-1"
# the temporary files adplg.io.atomic_write_bytes makes for <name>.safetensors / <name>.json (mkstemp's
# ".<file name>.<random>.tmp"); a kill during a write leaves one behind (about 1 GB for the paper model)
ORPHAN_TMP = re.compile(r"^\.[^./]+\.(safetensors|json)\.[A-Za-z0-9_]+\.tmp$")


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
    meta: dict[str, Any] = {"format": FORMAT, "step": step, "config": config,
                            "metrics": metrics or {}, "versions": versions(), **(extra_meta or {})}
    for name, optimizer in (optimizers or {}).items():
        opt_tensors, opt_meta = _flatten_optimizer(f"optim_{name}", optimizer)
        tensors.update(opt_tensors)
        meta[f"optim_{name}"] = opt_meta
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
    checkpoint_id = uuid.uuid4().hex
    blob = save(tensors, metadata={"format": FORMAT, "checkpoint_id": checkpoint_id, "step": str(step)})
    meta.update(checkpoint_id=checkpoint_id, weights_sha256=hashlib.sha256(blob).hexdigest(), weights_bytes=len(blob))
    # weights first, then the sidecar that names them: a crash in between leaves a pair whose ids differ
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


def weights_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of a weights file (``checkpoint_id``, ``step``, ``format``): reads the header only."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def pair_problem(path: Path, weights_meta: dict, sidecar_meta: dict) -> str | None:
    """Why ``path`` (a weights file) and its sidecar are not one checkpoint, or None when they are (or when both
    predate the id: nothing to compare). Cheap: compares the id, the step and the file size."""
    sidecar = path.with_suffix(".json")
    w_id, s_id = weights_meta.get("checkpoint_id"), sidecar_meta.get("checkpoint_id")
    if w_id is None and s_id is None:
        return None
    w_step, s_step = weights_meta.get("step", "?"), sidecar_meta.get("step", "?")
    if w_id != s_id or str(w_step) != str(s_step):
        return (f"checkpoint {path} and its sidecar {sidecar} do not belong together: the weights file is step "
                f"{w_step} (id {w_id or 'none'}) but the sidecar describes step {s_step} (id {s_id or 'none'}); the "
                f"process most likely stopped between writing the two files (a torn checkpoint)")
    size = sidecar_meta.get("weights_bytes")
    if size is not None and path.stat().st_size != size:
        return (f"checkpoint {path} is {path.stat().st_size} bytes but its sidecar {sidecar} records {size}: the "
                f"weights file is damaged")
    return None


@dataclass(frozen=True)
class Candidate:
    """A checkpoint in a folder whose two files belong together (see :func:`verified_checkpoints`)."""

    path: Path
    step: int
    full: bool  # optimizer and sampler state too (``--resume`` can continue it); else weights only


def verified_checkpoints(folder: Path, exclude: Path | None = None) -> list[Candidate]:
    """The checkpoints in ``folder`` whose weights and sidecar pass the id check (or predate it), newest step first
    (a full one before a weights-only one of the same step). Reads each sidecar and each weights header."""
    found = []
    for weights in Path(folder).glob("*.safetensors"):
        if weights.name.startswith(".") or (exclude is not None and weights == exclude):
            continue
        try:
            meta = json.loads(weights.with_suffix(".json").read_text())
            if not isinstance(meta, dict) or pair_problem(weights, weights_metadata(weights), meta):
                continue
            found.append(Candidate(weights, int(meta.get("step", -1)), "optim_v" in meta))
        except Exception:  # a missing, unreadable or foreign pair is simply not a candidate
            continue
    return sorted(found, key=lambda c: (c.step, c.full, c.path.name), reverse=True)


def alternatives(path: Path) -> str:
    """What to use instead of the broken checkpoint ``path``: the newest full checkpoint beside it that verifies
    (for ``--resume``) and the newest one of any kind (for ``test`` / ``export`` / ``score``)."""
    folder = path.parent
    found = verified_checkpoints(folder, exclude=path)
    full = next((c for c in found if c.full), None)
    if full is not None:
        text = (f"The newest full checkpoint that verifies is {full.path} (step {full.step}): continue training with "
                f"`adplg train --resume {full.path}`, or evaluate it with `adplg test --model_file {full.path}`.")
    else:
        text = (f"No other full checkpoint in {folder} verifies, so training cannot resume from this run (step_N "
                f"checkpoints hold weights only); start a new run with another --run_dir.")
    newest = found[0] if found else None
    if newest is not None and newest is not full:
        text += (f" The newest checkpoint that verifies is {newest.path} (step {newest.step}, weights only): "
                 f"evaluate or export it, e.g. `adplg test --model_file {newest.path}`.")
    elif newest is None:
        text += f" No other checkpoint in {folder} verifies."
    return text


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed checkpoint write left in ``folder``: only direct children named
    ``.<name>.safetensors.<random>.tmp`` or ``.<name>.json.<random>.tmp`` (``adplg.io.atomic_write_bytes``), never
    anything else. Call it only when no checkpoint of this folder is being written (the trainer's own save and
    resume). Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, size = [], 0
    for entry in folder.iterdir():
        if ORPHAN_TMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
            size += entry.stat().st_size
            entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        log.warning("removed %d temporary file(s) (%.1f MB) left in %s by an interrupted checkpoint write: %s",
                    len(removed), size / 2**20, folder, ", ".join(p.name for p in sorted(removed)))
    return removed


def read_sidecar(sidecar: Path) -> dict:
    """The JSON object of a checkpoint sidecar, with its ``config`` mapping; a binary file, invalid JSON, another
    JSON value or a missing ``config`` is one :class:`AdplgError` naming the sidecar (never quoting its contents)."""
    expected = "expected the JSON object adplg writes beside the weights, with a 'config' mapping"
    try:
        meta = json.loads(Path(sidecar).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise AdplgError(f"checkpoint sidecar {sidecar} is not text (binary data); {expected}") from None
    except OSError as exc:
        raise AdplgError(f"checkpoint sidecar {sidecar} cannot be read ({type(exc).__name__}); {expected}") from None
    except json.JSONDecodeError as exc:
        raise AdplgError(f"checkpoint sidecar {sidecar} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}); {expected}") from None
    if not isinstance(meta, dict):
        raise AdplgError(f"checkpoint sidecar {sidecar}: {expected}, got a JSON {_json_type(meta)}")
    if not isinstance(meta.get("config"), dict):
        got = "no 'config' key" if "config" not in meta else f"'config' as a JSON {_json_type(meta['config'])}"
        raise AdplgError(f"checkpoint sidecar {sidecar}: {expected}, got {got}")
    return meta


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _missing_message(given: Path, path: Path, missing: Path) -> str:
    if given.is_dir() and (given / "config.yaml").is_file() and not path.exists() \
            and not any((given / "checkpoints").glob("*.safetensors")):
        return (f"run directory {given} holds no checkpoint: the run stopped before its first one. Start it again "
                f"from step 0 with its saved config: `adplg train --config {given / 'config.yaml'} --run_dir {given}` "
                f"(a run directory without a checkpoint may be reused)")
    if missing == path:
        return f"checkpoint file not found: {path} (expected <name>.safetensors with its .json sidecar)"
    return (f"checkpoint sidecar not found: {missing} (its weights file {path} exists: the process most likely "
            f"stopped between writing the two files). Refusing to load it. {alternatives(path)}")


class Checkpoint:
    """A loaded checkpoint: ``tensors`` by prefix and the JSON ``meta``. Refuses (``AdplgError``) a weights file and
    sidecar that are not one checkpoint (see the module docstring)."""

    def __init__(self, path: str | Path):
        given = Path(path)
        path = checkpoint_file(path)
        sidecar = path.with_suffix(".json")
        for f in (path, sidecar):
            if not f.is_file():
                raise AdplgError(_missing_message(given, path, f))
        try:
            weights_meta = weights_metadata(path)
            self.tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise AdplgError(f"checkpoint {path} is unreadable or truncated ({short_reason(exc)}); expected a "
                             f"safetensors file written by adplg") from None
        self.meta = read_sidecar(sidecar)
        problem = pair_problem(path, weights_meta, self.meta)
        if problem:
            raise AdplgError(f"{problem}. Refusing to load it. {alternatives(path)}")
        self.path = path
        self.verify()

    def verify(self) -> bool:
        """Check the weights file against the sha256 its sidecar records (reads the whole file). True when it
        matches, False for a checkpoint written before the sidecar held a hash; raises ``AdplgError`` otherwise."""
        expected = self.meta.get("weights_sha256")
        if expected is None:
            return False
        actual = file_sha256(self.path)
        if actual != expected:
            raise AdplgError(f"checkpoint {self.path} does not match the sha256 recorded in its sidecar "
                             f"{self.path.with_suffix('.json')} ({actual[:12]}... != {expected[:12]}...): the weights "
                             f"file is damaged or was replaced. Refusing to use it. {alternatives(self.path)}")
        return True

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix`` (e.g. ``net_s``) with the ``prefix.`` stripped: a state_dict of that module."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def optimizer_state(self, name: str) -> dict:
        """The state_dict of optimizer ``name`` (saved flattened into the tensors and the sidecar), rebuilt."""
        return _unflatten_optimizer(f"optim_{name}", self.tensors, self.meta[f"optim_{name}"])
