"""Export the scoring branch (branch 2, ``net_s``) to ONNX or TorchScript, each with a JSON sidecar, and check an
exported file against the eager model.

Both formats take ``features`` float32 ``[batch, time, feature_dim]`` (one crop's snippet features; ``batch`` and
``time`` are dynamic, ``1 <= time <= max_len``) and return ``scores`` float32 ``[batch, time]``: sigmoid snippet
scores in ``[0, 1]``. The graph is fp32, in eval mode, with the "blocked" local attention (memory linear in ``time``;
numerically the same as "dense").

* ONNX: ``torch.onnx.export(dynamo=True)`` with ``dynamic_shapes`` (``time`` bounded by ``max_len``). Verified
  correct at lengths other than the example's, including lengths that are not multiples of the windows.
* TorchScript: ``torch.jit.script`` of the model, with only the input adapter (a Linear / zero-pad / standardise
  on the channel axis, with no shape arithmetic) traced, behind a scripted shape check.

``time > max_len`` has no positional embedding rows: TorchScript raises the model's own error (``sequence length
T=... exceeds ... max_len=...``); onnxruntime fails at the positional-embedding ``Add`` with a broadcast error
(``Attempting to broadcast an axis by a dimension other than 1. <max_len> by <T>``). Check ``max_len`` in the
sidecar before running. A causal model (``model.causal``) has no positional embedding and takes any ``time``: its
sidecar says ``max_len`` null, ``causal`` true and the ``receptive_field`` (past snippets a score depends on).

Alert thresholds are not part of either graph: they live in a separate alerts config beside the model.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from adplg.checkpoints.format import checkpoint_file
from adplg.config import Config
from adplg.errors import AdplgError
from adplg.io import OutputError, atomic_write_bytes, atomic_write_text, check_output_file, file_sha256
from adplg.models.ensemble import SnippetEnsemble
from adplg.models.snippet_branch import SnippetBranch
from adplg.models.video_branch import InputAdapter
from adplg.runtime import versions

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
INPUT_NAME = "features"
OUTPUT_NAME = "scores"
SIDECAR_FORMAT = "adplg-export-1"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
MIN_OPSET = 18
EXAMPLE_LENGTH = 17  # not a multiple of any default window, so no window size is special-cased by the export
DEFAULT_CHECK_LENGTHS = (37, 64)
DEFAULT_CHECK_BATCHES = (1, 3)
THRESHOLD_NOTE = ("Alert thresholds are NOT part of the exported graph: it outputs raw sigmoid snippet scores in "
                  "[0, 1]. Thresholds live in a separate alerts config kept beside the model.")
CROPS_NOTE = ("The graph scores one crop's features. Score each of the test_crops crops separately and average the "
              "crop scores per snippet (as `adplg test` does).")
MAX_LEN_NOTE = {
    "onnx": "time must be <= max_len; longer inputs fail in onnxruntime at the positional-embedding Add with a "
            "broadcast error ('... by a dimension other than 1. <max_len> by <time>').",
    "torchscript": "time must be <= max_len; longer inputs raise 'sequence length T=... exceeds the snippet "
                   "branch's max_len=...' (torch.jit.Error).",
}
CAUSAL_NOTE = ("causal model: no positional embedding, any time works; score i depends on features i - "
               "receptive_field .. i only, so a stream can be scored over its last receptive_field + 1 snippets.")
# loggers silenced (to ERROR) during an ONNX export: top-level packages, and dotted prefixes inside torch
_ONNX_LOGGER_ROOTS = ("onnxscript", "onnx_ir", "onnx", "onnxruntime")
_ONNX_LOGGER_PREFIXES = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo",
                         "torch._subclasses", "torch.utils._sympy")


# ---------------------------------------------------------------- small helpers

def check_format(fmt: str) -> str:
    """Validate an export format name (``"onnx"`` or ``"torchscript"``)."""
    if fmt not in EXPORT_FORMATS:
        raise AdplgError(f"unknown export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    return fmt


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an exported file: ``<path>.json`` (``model.onnx`` -> ``model.onnx.json``)."""
    return Path(str(path) + ".json")


def require_onnx_packages() -> None:
    """Raise a clear :class:`AdplgError` when onnx / onnxscript / onnxruntime are not installed."""
    missing = []
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise AdplgError(f"ONNX export needs the packages {', '.join(ONNX_PACKAGES)}; missing: {', '.join(missing)}. "
                         f"Install them with: pip install adplg[export]")


def feature_dim_of(net_s: SnippetBranch | SnippetEnsemble) -> int:
    """The input feature size ``D`` the snippet branch expects (``x [B, T, D]``)."""
    return int(net_s.input_adapter.in_dim)


@contextmanager
def _eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``net`` in eval mode (dropout off), restoring its training flag afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch's deprecation notices for ``torch.jit`` (TorchScript still works; it is this export format)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


@contextmanager
def _quiet_onnx_export() -> Iterator[None]:
    """Hide the exporter's chatter around an ONNX export: the INFO/WARNING logging of ``torch.onnx``, ``torch.export``
    and the onnxscript optimiser (hundreds of lines such as "The value 'start' is not 0."), its Python warnings and
    anything it prints. Errors still propagate; what the exporter printed is replayed on stderr if it fails. Logger
    levels and warning filters are restored afterwards."""
    loggers = {}
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in _ONNX_LOGGER_ROOTS or name.startswith(_ONNX_LOGGER_PREFIXES):
            loggers[name] = logging.getLogger(name)
    for name in (*_ONNX_LOGGER_ROOTS, *_ONNX_LOGGER_PREFIXES):
        loggers.setdefault(name, logging.getLogger(name))
    levels = {name: logger.level for name, logger in loggers.items()}
    printed = io.StringIO()
    try:
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), redirect_stdout(printed), redirect_stderr(printed):
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        sys.stderr.write(printed.getvalue())
        raise
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])


def _prepare(net_s: SnippetBranch | SnippetEnsemble) -> SnippetBranch:
    """A CPU fp32 eval-mode copy of ``net_s`` with blocked local attention; the caller's module is left as is."""
    if not isinstance(net_s, SnippetBranch):
        if hasattr(net_s, "members"):
            raise AdplgError(f"export needs one snippet branch, got an ensemble of {len(net_s.members)} (a checkpoint "
                             f"trained with model.snippet_members > 1): exporting ensembles is not supported yet; "
                             f"score it with adplg score / adplg test instead")
        raise AdplgError(f"export needs the snippet branch (SnippetBranch, net_s), got {type(net_s).__name__}")
    net = copy.deepcopy(net_s).to(device="cpu", dtype=torch.float32).eval()
    net.attention = "blocked"
    if net.max_len < 2:
        raise AdplgError(f"export needs model.max_len >= 2 for a dynamic time axis, got max_len={net.max_len}")
    return net


def _example_input(net: SnippetBranch) -> Tensor:
    """A ``[2, T, D]`` example (``B = 2`` and ``T >= 2`` so neither axis is specialised to a constant)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, min(EXAMPLE_LENGTH, net.max_len), feature_dim_of(net), generator=generator)


# ---------------------------------------------------------------- sidecar

def _source_info(source: str | Path | None) -> dict[str, Any] | None:
    if source is None:
        return None
    given = Path(source)
    resolved = checkpoint_file(given)
    sha = file_sha256(resolved) if resolved.is_file() else None
    return {"checkpoint": str(given), "file": str(resolved), "sha256": sha}


def _format_versions(fmt: str) -> dict[str, Any]:
    out = versions()
    if fmt == "onnx":
        for name in ONNX_PACKAGES:
            out[name] = getattr(importlib.import_module(name), "__version__", None)
    return out


def build_sidecar(path: Path, fmt: str, net: SnippetBranch, config: Config | None = None,
                  source: str | Path | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar record of an exported file (see the module docstring for the contract it describes)."""
    data = config.data if config is not None else None
    return {
        "format": SIDECAR_FORMAT,
        "export_format": fmt,
        "file": path.name,
        "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", "time", feature_dim_of(net)]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", "time"],
                     "meaning": "sigmoid anomaly score per snippet, in [0, 1]"}],
        "feature_dim": feature_dim_of(net),
        "max_len": None if net.causal else net.max_len,
        "max_len_note": CAUSAL_NOTE if net.causal else MAX_LEN_NOTE[fmt],
        "causal": net.causal,
        "receptive_field": net.receptive_field() if net.causal else None,
        "snippet_frames": data.layout.frames_per_snippet if data is not None else 16,
        "snippet_layout": data.layout.kind if data is not None else "uniform",
        "test_crops": data.test_crops if data is not None else None,
        "crops_note": CROPS_NOTE,
        "local_attention": net.attention,
        "precision": "fp32",
        "thresholds_note": THRESHOLD_NOTE,
        "config": config.to_dict() if config is not None else None,
        "source": _source_info(source),
        "versions": _format_versions(fmt),
        **(extra or {}),
    }


def write_sidecar(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` atomically to ``<path>.json``; returns the sidecar path."""
    out = sidecar_path(path)
    atomic_write_text(out, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return out


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of an exported file, or a clear :class:`AdplgError`."""
    side = sidecar_path(path)
    if not side.is_file():
        raise AdplgError(f"export sidecar not found: expected {side} beside {path}")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise AdplgError(f"export sidecar {side} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------- ONNX

def _check_opset(opset: int | None) -> int | None:
    if opset is not None and int(opset) < MIN_OPSET:
        raise AdplgError(f"ONNX opset too old: expected >= {MIN_OPSET} (the dynamo exporter's minimum), got {opset}")
    return None if opset is None else int(opset)


def _onnx_bytes(net: SnippetBranch, opset: int | None) -> bytes:
    """Serialised ONNX model of ``net`` with dynamic ``batch`` and ``time`` (``1 .. max_len``) axes."""
    batch = torch.export.Dim("batch", min=1)
    time = torch.export.Dim("time", min=1, max=net.max_len)
    with torch.no_grad(), _quiet_onnx_export():
        program = torch.onnx.export(net, (_example_input(net),), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch, 1: time},),
                                    opset_version=opset, optimize=True, verbose=False)
    assert program is not None  # dynamo=True always returns an ONNXProgram (torch types the legacy exporter's None)
    proto = program.model_proto
    size = proto.ByteSize()
    if size >= 2**31:
        raise AdplgError(f"the ONNX model is {size / 2**30:.2f} GiB: expected < 2 GiB (the single-file protobuf "
                         f"limit); lower model.max_len or the model widths")
    return proto.SerializeToString()


def export_onnx(net_s: SnippetBranch | SnippetEnsemble, path: str | Path, feature_dim: int, opset: int | None = None, *,
                config: Config | None = None, source: str | Path | None = None) -> Path:
    """Export ``net_s`` to ONNX at ``path`` (plus ``<path>.json``): ``features [batch, time, feature_dim]`` ->
    ``scores [batch, time]``. ``opset`` defaults to the exporter's. Returns ``path``."""
    require_onnx_packages()
    net = _prepare(net_s)
    if int(feature_dim) != feature_dim_of(net):
        raise AdplgError(f"feature_dim does not fit the model: expected {feature_dim_of(net)} (its input adapter), "
                         f"got {feature_dim}")
    opset = _check_opset(opset)
    path = Path(path)
    blob = _onnx_bytes(net, opset)
    atomic_write_bytes(path, blob)
    import onnx

    used_opset = next(o.version for o in onnx.load_from_string(blob).opset_import if o.domain in ("", "ai.onnx"))
    write_sidecar(path, build_sidecar(path, "onnx", net, config, source, {"opset": used_opset}))
    return path


# ---------------------------------------------------------------- TorchScript

class _TracedInputAdapter(nn.Module):
    """Script-friendly stand-in for :class:`~adplg.models.video_branch.InputAdapter`: checks ``x [B, T, in_dim]``
    (scripted) and runs the traced adapter (per-channel ops only, so the trace holds at every ``B`` and ``T``)."""

    def __init__(self, adapter: InputAdapter):
        super().__init__()
        self.in_dim = int(adapter.in_dim)
        example = torch.zeros(2, 3, self.in_dim)
        with _quiet_jit():
            self.traced = torch.jit.trace(adapter, example)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, in_dim]`` -> ``[B, T, model_dim]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise AdplgError(f"expected features of shape [B, T, {self.in_dim}], got {list(x.shape)}")
        return self.traced(x)


def _script_prepared(net: SnippetBranch) -> torch.jit.ScriptModule:
    """Script a :func:`_prepare`-d copy in place (its input adapter becomes :class:`_TracedInputAdapter`)."""
    # add_module replaces the registered submodule (what assigning the attribute does) with one of another class
    net.add_module("input_adapter", _TracedInputAdapter(net.input_adapter))
    with _quiet_jit():
        return torch.jit.script(net)


def script_snippet_branch(net_s: SnippetBranch | SnippetEnsemble) -> torch.jit.ScriptModule:
    """A ``torch.jit.script`` module of ``net_s`` (fp32, eval, blocked attention): ``[B, T, D]`` -> ``[B, T]``."""
    return _script_prepared(_prepare(net_s))


def export_torchscript(net_s: SnippetBranch | SnippetEnsemble, path: str | Path, *, config: Config | None = None,
                       source: str | Path | None = None) -> Path:
    """Export ``net_s`` as a TorchScript file at ``path`` (plus ``<path>.json``), loadable with ``torch.jit.load``
    without adplg installed: ``features [batch, time, D]`` -> ``scores [batch, time]``. Returns ``path``."""
    net = _prepare(net_s)
    buffer = io.BytesIO()
    scripted = _script_prepared(net)
    with _quiet_jit():
        torch.jit.save(scripted, buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    write_sidecar(path, build_sidecar(path, "torchscript", net, config, source))
    return path


def export_model(net_s: SnippetBranch | SnippetEnsemble, path: str | Path, fmt: str, *, opset: int | None = None,
                 config: Config | None = None, source: str | Path | None = None) -> Path:
    """Dispatch to :func:`export_onnx` / :func:`export_torchscript` by format name."""
    if check_format(fmt) == "onnx":
        return export_onnx(net_s, path, feature_dim_of(net_s), opset, config=config, source=source)
    return export_torchscript(net_s, path, config=config, source=source)


def check_tolerance(value: float, name: str = "atol") -> float:
    """A check tolerance: a finite number > 0 (``0``, negative, ``nan`` and ``inf`` are :class:`AdplgError`)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdplgError(f"--{name}: expected a finite number > 0, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise AdplgError(f"--{name}: expected a finite number > 0, got {value!r}")
    return number


def check_export_target(path: str | Path) -> Path:
    """Before exporting: ``path`` and its sidecar ``<path>.json`` can be written (neither is a folder, their folder
    is writable). Raises :class:`~adplg.io.OutputError` otherwise; returns ``path``."""
    path = check_output_file(path, "export output")
    check_output_file(sidecar_path(path), "export sidecar")
    return path


def export_checked(net_s: SnippetBranch | SnippetEnsemble, path: str | Path, fmt: str, *, opset: int | None = None,
                   config: Config | None = None, source: str | Path | None = None, check: bool = True,
                   atol: float = 1e-4, lengths: Sequence[int] | None = None) -> dict[str, Any] | None:
    """Export ``net_s`` to ``path`` (plus ``<path>.json``) without ever destroying a file already there: the model
    and its sidecar are written into a temporary folder beside ``path``, checked there against the eager model
    (``check``: :func:`check_export` at ``lengths``, default :data:`DEFAULT_CHECK_LENGTHS` capped at ``max_len``;
    the result is recorded in the sidecar), and only then renamed over ``path`` and ``<path>.json``. A failed check
    (or any error) raises with the temporaries removed and an existing ``path`` byte-for-byte unchanged. Returns the
    check result, or None without ``check``."""
    fmt = check_format(fmt)
    atol = check_tolerance(atol)
    path = check_export_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        staged = export_model(net_s, stage / path.name, fmt, opset=opset, config=config, source=source)
        result = None
        if check:
            max_len = int(net_s.max_len)
            lengths = sorted({min(int(t), max_len) for t in (lengths or DEFAULT_CHECK_LENGTHS)})
            result = check_export(staged, net_s, lengths=lengths, atol=atol, fmt=fmt)
            result["file"] = str(path)
            if not result["passed"]:
                shown = ", ".join(f"{k}: {v:.3g}" for k, v in result["max_abs_diff"].items())
                kept = f"{path} was left as it was" if path.exists() else f"nothing was written to {path}"
                raise AdplgError(f"exported model does not match the eager model: expected max |export - eager| "
                                 f"<= {atol:g}, got {result['max_abs_diff_overall']:.3g} ({shown}); the new export was "
                                 f"discarded and {kept} (rerun with --no-check to keep it for inspection)")
            write_sidecar(staged, {**read_sidecar(staged), "check": result})
        try:
            os.replace(staged, path)
            os.replace(sidecar_path(staged), sidecar_path(path))
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}", exc.errno) from None
        return result
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ---------------------------------------------------------------- running and checking an export

def _detect_format(path: Path) -> str:
    side = sidecar_path(path)
    if side.is_file():
        return check_format(read_sidecar(path).get("export_format", ""))
    by_suffix = {".onnx": "onnx", ".ts": "torchscript", ".pt": "torchscript"}
    if path.suffix not in by_suffix:
        raise AdplgError(f"cannot tell the format of {path}: expected a {sidecar_path(path).name} sidecar or a "
                         f".onnx / .ts file name, got suffix {path.suffix!r}")
    return by_suffix[path.suffix]


def load_exported(path: str | Path, fmt: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A runner for an exported file: ``features [B, T, D]`` float32 array -> ``scores [B, T]`` array."""
    path = Path(path)
    if not path.is_file():
        raise AdplgError(f"exported model not found: {path}")
    fmt = check_format(fmt) if fmt else _detect_format(path)
    if fmt == "onnx":
        require_onnx_packages()
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
    with _quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run_torchscript(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run_torchscript


def _check_lengths(lengths: Sequence[int], max_len: int) -> list[int]:
    out = [int(t) for t in lengths]
    bad = [t for t in out if not 1 <= t <= max_len]
    if not out or bad:
        raise AdplgError(f"check lengths must lie in 1..max_len={max_len}: got {list(lengths)}")
    return out


def _eager_scores(net_s: SnippetBranch | SnippetEnsemble, x: Tensor) -> np.ndarray:
    """Eager ``net_s`` on ``x [B, T, D]`` (on the model's device, eval mode) -> ``[B, T]`` float32 array."""
    device = next(net_s.parameters()).device
    with _eval_mode(net_s), torch.no_grad():
        return net_s(x.to(device)).float().cpu().numpy()


def check_export(path: str | Path, net_s: SnippetBranch | SnippetEnsemble,
                 lengths: Sequence[int] = DEFAULT_CHECK_LENGTHS, atol: float = 1e-4,
                 batch_sizes: Sequence[int] = DEFAULT_CHECK_BATCHES, seed: int = 0,
                 fmt: str | None = None) -> dict[str, Any]:
    """Run the exported file and the eager ``net_s`` on the same random ``[B, T, D]`` inputs for every batch size and
    length, and return ``{"max_abs_diff": {"batch=B,time=T": d, ...}, "max_abs_diff_overall", "atol", "passed",
    ...}``. Lengths above ``max_len`` are an :class:`AdplgError` (see the module docstring)."""
    path = Path(path)
    atol = check_tolerance(atol)
    runner = load_exported(path, fmt)
    lengths = _check_lengths(lengths, net_s.max_len)
    generator = torch.Generator().manual_seed(seed)
    diffs: dict[str, float] = {}
    for b in batch_sizes:
        for t in lengths:
            x = torch.randn(int(b), t, feature_dim_of(net_s), generator=generator)
            got = runner(x.numpy())
            want = _eager_scores(net_s, x)
            if got.shape != want.shape:
                raise AdplgError(f"{path}: output shape differs from the eager model's: expected {list(want.shape)}, "
                                 f"got {list(got.shape)}")
            diffs[f"batch={b},time={t}"] = float(np.abs(got.astype(np.float64) - want).max())
    worst = max(diffs.values())
    return {"file": str(path), "format": fmt or _detect_format(path), "atol": float(atol), "lengths": lengths,
            "batch_sizes": [int(b) for b in batch_sizes], "max_abs_diff": diffs, "max_abs_diff_overall": worst,
            "passed": bool(worst <= atol)}
