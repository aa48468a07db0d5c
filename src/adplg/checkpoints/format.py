"""Checkpoints: a safetensors file of tensors (both branches, pseudo-label history, optimizer moments, RNG states,
the running losses since the last log line) plus a JSON sidecar (config, step, metrics, versions, data manifest,
optimizer hyper-parameters). Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file.

The two files of one checkpoint are tied together: the weights file is written first, with a random
``checkpoint_id`` and the ``step`` in its safetensors metadata; the sidecar then records the same ``checkpoint_id``
and ``step`` plus the ``weights_sha256`` and ``weights_bytes`` of the weights file. A crash between the two writes
leaves new weights beside the previous sidecar; :class:`Checkpoint` compares the ids (a cheap header read) and
refuses such a torn pair (:class:`BrokenCheckpointError`), naming the newest checkpoint in the same folder that does
verify. :class:`Checkpoint` also checks the weights' sha256 on every load (:meth:`Checkpoint.verify`: one more read
of the file, which a damaged byte would otherwise pass silently).

A run's full checkpoint ``last`` is rewritten every few hundred steps, so a kill between its two writes must not
cost the run. Two designs fit: one file per checkpoint (the sidecar inside the safetensors header, one rename
publishing both), or keeping the previous pair until the new one verifies. The second is used: it keeps the
two-file format every existing run, tool and test reads (the sidecar stays the readable, checked record), and it
needs no copy of the data. A save of ``last`` (``save_checkpoint(..., keep_previous=True)``) runs:

1. when ``last`` verifies (ids, step, size), hard-link its two files as ``previous`` (each link made under a
   temporary name and renamed; a copy where the file system has no hard links);
2. write the new weights, then the new sidecar, over ``last``;
3. when the new ``last`` verifies, delete ``previous``.

Each step replaces one file atomically and at most one of ``last`` / ``previous`` is being changed at any moment,
so a kill anywhere leaves one full pair that verifies: the new ``last``, the old ``last``, or ``previous`` (the old
``last``, while the new one is torn). A resume of a run whose ``last`` does not verify continues from the newest
full checkpoint beside it that does (``adplg.checkpoints.resume``), so a killed save costs at most the steps since
the previous full checkpoint. A finished save leaves only ``last`` (``previous`` costs disk space only while a save
is in flight or was killed).

Checkpoints written before the id existed (no id in either file: "legacy") are checked as far as they can be: the
step that the weights file's optimizer state implies against the sidecar's step and scheduler, the pseudo-label
history against the sidecar's keys, the optimizer slots the sidecar lists, the size and sha256 where recorded (the
weights' shapes are checked against the model when they are loaded), and a warning says that such a pair cannot be
fully verified. A safetensors file with neither ``checkpoint_id`` nor our ``format`` in its metadata is not an adplg
checkpoint, and a ``torch.save`` file (the authors' ``.pkl``) is named as such, not as a torn checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from adplg.errors import AdplgError
from adplg.io import OutputError, atomic_write_bytes, atomic_write_text, file_sha256
from adplg.models.backbones.weights import short_reason
from adplg.runtime import versions

log = logging.getLogger("adplg")

FORMAT = "adplg-checkpoint-1"
LAST = "last"  # a run's full checkpoint, rewritten as it trains (``train --resume`` continues it)
PREVIOUS = "previous"  # the last ``last`` that verified, kept while a new ``last`` is written (module docstring)
RUN_CONFIG = "config.yaml"  # the resolved config a run directory keeps beside its checkpoints/
OFFICIAL_SUFFIXES = (".pkl", ".pth", ".pt")  # the authors' released checkpoints
# the temporary files adplg.io.atomic_write_bytes makes for <name>.safetensors / <name>.json (mkstemp's
# ".<file name>.<random>.tmp"); a kill during a write leaves one behind (about 1 GB for the paper model)
ORPHAN_TMP = re.compile(r"^\.[^./]+\.(safetensors|json)\.[A-Za-z0-9_]+\.tmp$")
OPTIMIZER_STEP = re.compile(r"^optim_(v|s)\.\d+\.step$")  # Adam's per-parameter step count, in the weights file


class BrokenCheckpointError(AdplgError):
    """One of our checkpoints whose files do not verify: a torn pair (the two files of two saves), weights without
    their sidecar, a damaged or unreadable file. ``reason`` says what is wrong in one clause (the message adds what
    to use instead); ``path`` is the weights file."""

    def __init__(self, message: str, *, reason: str, path: Path):
        super().__init__(message)
        self.reason = reason
        self.path = path


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
                    extra_meta: dict | None = None, keep_previous: bool = False) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the safetensors path. ``keep_previous``: the pair
    being replaced stays as ``previous.safetensors`` + ``.json`` beside it until the new pair verifies (for a run's
    ``last``, see the module docstring)."""
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
    previous = path.with_name(f"{PREVIOUS}.safetensors")
    if keep_previous and quick_check(path) is not None:  # a torn or missing last keeps the previous pair instead
        for suffix in (".safetensors", ".json"):
            publish_link(path.with_suffix(suffix), previous.with_suffix(suffix))
    # weights first, then the sidecar that names them: a crash in between leaves a pair whose ids differ
    atomic_write_bytes(path, blob)
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str))
    if keep_previous and quick_check(path) is not None:
        for suffix in (".safetensors", ".json"):  # the weights first: a lone previous.json is never mistaken
            remove_file(previous.with_suffix(suffix))
    return path


def publish_link(source: Path, target: Path) -> None:
    """Make ``target`` a second name of the file ``source`` (a hard link; a fsynced copy where the file system has
    none), atomically: through a temporary name beside ``target`` (one that :func:`remove_orphan_temporaries`
    removes if a kill leaves it) renamed over ``target``."""
    if target.exists() and os.path.samefile(source, target):
        return  # already (a kill after this link, before the save went on); rename() would leave the temporary
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(source, temporary)
        except OSError:
            with open(source, "rb") as reader, open(temporary, "wb") as writer:
                shutil.copyfileobj(reader, writer, 2**24)
                writer.flush()
                os.fsync(writer.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot keep {source} as {target} while a new checkpoint is written ("
                              f"{exc.strerror or exc}); {source} is left as it was", exc.errno) from exc
        raise


def remove_file(path: Path) -> None:
    """Delete ``path`` if it exists (one step of a save of ``last``; a name of its own so a fault test can stop a
    save between any two of its file operations)."""
    Path(path).unlink(missing_ok=True)


def checkpoint_file(path: Path | str) -> Path:
    """The weights file a checkpoint argument names: a run directory -> its ``checkpoints/last.safetensors`` (or a
    ``last.safetensors`` inside it); ``<name>``, ``<name>.json`` or ``<name>.safetensors`` -> ``<name>.safetensors``;
    the authors' ``.pkl`` / ``.pth`` / ``.pt`` files as given."""
    path = Path(path)
    if path.is_dir():
        latest = path / "checkpoints" / f"{LAST}.safetensors"
        return latest if latest.exists() else path / f"{LAST}.safetensors"
    return path if path.suffix in OFFICIAL_SUFFIXES else path.with_suffix(".safetensors")


def weights_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of a weights file (``checkpoint_id``, ``step``, ``format``): reads the header only."""
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def pair_problem(path: Path, weights_meta: dict, sidecar_meta: dict) -> str | None:
    """Why ``path`` (a weights file) and its sidecar are not one checkpoint, or None when they are (or when both
    predate the id: see :func:`legacy_pair_problem`). Cheap: compares the id, the step and the file size."""
    sidecar = path.with_suffix(".json")
    w_id, s_id = weights_meta.get("checkpoint_id"), sidecar_meta.get("checkpoint_id")
    w_step, s_step = weights_meta.get("step", "?"), sidecar_meta.get("step", "?")
    if (w_id is not None or s_id is not None) and (w_id != s_id or str(w_step) != str(s_step)):
        return (f"checkpoint {path} and its sidecar {sidecar} do not belong together: the weights file is step "
                f"{w_step} (id {w_id or 'none'}) but the sidecar describes step {s_step} (id {s_id or 'none'}); the "
                f"process most likely stopped between writing the two files (a torn checkpoint)")
    size = sidecar_meta.get("weights_bytes")
    if size is not None and path.stat().st_size != size:
        return (f"checkpoint {path} is {path.stat().st_size} bytes but its sidecar {sidecar} records {size}: the "
                f"weights file is damaged")
    return None


def legacy_pair_problem(path: Path, tensors: dict[str, torch.Tensor], sidecar_meta: dict) -> str | None:
    """For a pair that predates the checkpoint id: why the weights ``tensors`` (of ``path``) and the sidecar cannot be
    one save, as far as their contents tell, or None. Branch 1's optimizer steps once per training step and branch
    2's once per scheduler step, so the largest Adam ``step`` in the weights must equal the sidecar's ``step`` and
    its scheduler's ``last_epoch``; the pseudo-label history holds one row per key the sidecar lists; every optimizer
    slot the sidecar lists has its tensors. A weights-only checkpoint holds none of these: nothing to compare."""
    sidecar = path.with_suffix(".json")
    torn = (f"checkpoint {path} and its sidecar {sidecar} do not belong together (a checkpoint from before "
            f"checkpoint ids, so only their contents can be compared): ")
    counts: dict[str, int] = {}
    for key, value in tensors.items():
        match = OPTIMIZER_STEP.match(key)
        if match and value.numel() == 1:
            counts[match.group(1)] = max(counts.get(match.group(1), 0), int(value.item()))
    expected = {"v": sidecar_meta.get("step"), "s": (sidecar_meta.get("scheduler") or {}).get("last_epoch")}
    for branch, what in (("v", "the sidecar's step"), ("s", "the sidecar's scheduler steps")):
        if branch in counts and isinstance(expected[branch], int) and counts[branch] != expected[branch]:
            return (f"{torn}the weights file's branch-{1 if branch == 'v' else 2} optimizer has taken {counts[branch]} "
                    f"steps but {what} is {expected[branch]}; the process most likely stopped between writing the "
                    f"two files (a torn checkpoint)")
    history, keys = tensors.get("extra.plg.buffer"), sidecar_meta.get("history_keys")
    if history is not None and isinstance(keys, list) and history.shape[0] != len(keys):
        return (f"{torn}the weights file's pseudo-label history has {history.shape[0]} rows but the sidecar lists "
                f"{len(keys)} keys")
    for name in ("v", "s"):
        slots = (sidecar_meta.get(f"optim_{name}") or {}).get("ids") or []
        missing = [pid for pid in slots if not any(k.startswith(f"optim_{name}.{pid}.") for k in tensors)]
        if missing and any(k.startswith(f"optim_{name}.") for k in tensors):
            return (f"{torn}the sidecar lists branch-{1 if name == 'v' else 2} optimizer slots {missing[:5]} that the "
                    f"weights file lacks")
    return None


def quick_check(path: Path) -> dict | None:
    """The sidecar of ``path`` (a weights file) when the two files are one checkpoint by the cheap check of
    :func:`pair_problem` (a header read and the sidecar), else None (missing, unreadable, foreign or torn)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        weights_meta = weights_metadata(path)
    except Exception:  # a missing, unreadable or foreign pair is simply not one
        return None
    if not isinstance(meta, dict) or pair_problem(path, weights_meta, meta):
        return None
    return meta


@dataclass(frozen=True, kw_only=True)
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
        meta = quick_check(weights)
        try:
            if meta is not None:
                found.append(Candidate(path=weights, step=int(meta.get("step", -1)), full="optim_v" in meta))
        except (TypeError, ValueError):  # a sidecar whose step is not a number is not a candidate
            continue
    return sorted(found, key=lambda c: (c.step, c.full, c.path.name), reverse=True)


def restart_command(run_dir: Path) -> str | None:
    """The command that starts the run in ``run_dir`` over from step 0, with its saved config, in a new run directory
    beside it (``<run>-restart``, ``<run>-restart2``, ...: the old run's files stay as they are); None when
    ``run_dir`` holds no saved config."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG).is_file():
        return None
    target, n = run_dir.with_name(f"{run_dir.name}-restart"), 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}-restart{n}")
    return f"adplg train --config {run_dir / RUN_CONFIG} --run_dir {target}"


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
        restart = restart_command(folder.parent) if folder.name == "checkpoints" else None
        how = (f"start it over from step 0 in a new run directory with its saved config: `{restart}`" if restart
               else "start a new run in another run directory")
        text = (f"No other full checkpoint in {folder} verifies, so training cannot resume from this run (step_N "
                f"checkpoints hold weights only); {how}.")
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
    if given.is_dir() and (given / RUN_CONFIG).is_file() and not path.exists() \
            and not any((given / "checkpoints").glob("*.safetensors")):
        return (f"run directory {given} holds no checkpoint: the run stopped before its first one. Start it again "
                f"from step 0 with its saved config: `adplg train --config {given / RUN_CONFIG} --run_dir {given}` "
                f"(a run directory without a checkpoint may be reused)")
    if missing == path:
        return f"checkpoint file not found: {path} (expected <name>.safetensors with its .json sidecar)"
    return (f"checkpoint sidecar not found: {missing} (its weights file {path} exists: the process most likely "
            f"stopped between writing the two files). Refusing to load it. {alternatives(path)}")


def torch_file_kind(path: Path) -> str | None:
    """``"a zip archive"`` or ``"a pickle"`` when ``path`` starts like a ``torch.save`` file (the current zip format
    or the legacy pickle one, as the authors' ``.pkl`` checkpoints are), else None. Reads four bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return None
    if head == b"PK\x03\x04":
        return "a zip archive"
    return "a pickle" if head[:1] == b"\x80" else None


def _unreadable(path: Path, exc: Exception) -> BrokenCheckpointError:
    reason = f"checkpoint {path} is unreadable or truncated ({short_reason(exc)})"
    return BrokenCheckpointError(f"{reason}; expected a safetensors file written by adplg", reason=reason, path=path)


class Checkpoint:
    """A loaded checkpoint: ``tensors`` by prefix and the JSON ``meta``. Refuses a weights file and sidecar that are
    not one checkpoint (:class:`BrokenCheckpointError`), and with a plain :class:`AdplgError` a file that is not an
    adplg checkpoint at all (a ``torch.save`` file, a foreign safetensors file); see the module docstring."""

    def __init__(self, path: str | Path):
        given = Path(path)
        path = checkpoint_file(path)
        sidecar = path.with_suffix(".json")
        if not path.is_file():
            raise AdplgError(_missing_message(given, path, path))
        kind = torch_file_kind(path)
        if kind is not None or path.suffix in OFFICIAL_SUFFIXES:
            raise AdplgError(
                f"{path} is a PyTorch checkpoint ({kind or 'by its suffix ' + path.suffix}, written by torch.save), "
                f"such as the authors' released *_model_s_*.pkl files, not an adplg checkpoint (<name>.safetensors "
                f"with its <name>.json sidecar, or a run directory). It holds no adplg training state (optimizers, "
                f"pseudo-label history, samplers), so training cannot resume from it; evaluate it with "
                f"`adplg test --preset <its preset> --model_file {path}`")
        try:
            weights_meta = weights_metadata(path)
        except Exception as exc:  # safetensors raises its own error types
            raise _unreadable(path, exc) from None
        if "checkpoint_id" not in weights_meta and weights_meta.get("format") != FORMAT:
            found = (f"; its metadata has format {weights_meta['format']!r}" if "format" in weights_meta
                     else f"; its metadata holds {sorted(weights_meta)[:8]}" if weights_meta
                     else "; it has no metadata")
            raise AdplgError(f"{path} is not an adplg checkpoint: no checkpoint_id/format in its metadata (adplg "
                             f"writes <name>.safetensors with format {FORMAT!r} in its metadata, beside a <name>.json "
                             f"sidecar{found})")
        if not sidecar.is_file():
            message = _missing_message(given, path, sidecar)
            raise BrokenCheckpointError(message, reason=message.split(". Refusing")[0], path=path)
        try:
            self.tensors = load_file(str(path))
        except Exception as exc:
            raise _unreadable(path, exc) from None
        try:
            self.meta = read_sidecar(sidecar)
        except AdplgError as exc:  # a damaged sidecar: this pair does not verify either
            raise BrokenCheckpointError(str(exc), reason=str(exc), path=path) from None
        problem = pair_problem(path, weights_meta, self.meta)
        legacy = "checkpoint_id" not in weights_meta and "checkpoint_id" not in self.meta
        if problem is None and legacy:
            problem = legacy_pair_problem(path, self.tensors, self.meta)
        if problem:
            raise BrokenCheckpointError(f"{problem}. Refusing to load it. {alternatives(path)}", reason=problem,
                                        path=path)
        self.path = path
        self.verify()
        if legacy:
            log.warning("checkpoint %s predates checkpoint ids: its weights and sidecar were compared as far as their "
                        "contents allow (step, pseudo-label keys, optimizer slots%s), but cannot be fully verified "
                        "as one save", path, ", sha256" if "weights_sha256" in self.meta else "")

    def verify(self) -> bool:
        """Check the weights file against the sha256 its sidecar records (reads the whole file). True when it
        matches, False for a checkpoint written before the sidecar held a hash; raises
        :class:`BrokenCheckpointError` otherwise."""
        expected = self.meta.get("weights_sha256")
        if expected is None:
            return False
        actual = file_sha256(self.path)
        if actual != expected:
            reason = (f"checkpoint {self.path} does not match the sha256 recorded in its sidecar "
                      f"{self.path.with_suffix('.json')} ({actual[:12]}... != {expected[:12]}...): the weights file "
                      f"is damaged or was replaced")
            raise BrokenCheckpointError(f"{reason}. Refusing to use it. {alternatives(self.path)}", reason=reason,
                                        path=self.path)
        return True

    def part(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix`` (e.g. ``net_s``) with the ``prefix.`` stripped: a state_dict of that module."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    def optimizer_state(self, name: str) -> dict:
        """The state_dict of optimizer ``name`` (saved flattened into the tensors and the sidecar), rebuilt."""
        return _unflatten_optimizer(f"optim_{name}", self.tensors, self.meta[f"optim_{name}"])
