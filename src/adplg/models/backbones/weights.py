"""Reading and checking backbone weight files: ``torch.load`` with ``weights_only=True``, unwrapping common
containers, and one error that lists every missing, unexpected or mis-shaped key."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adplg.errors import AdplgError


def read_torch_file(path: Path, what: str, expected: str = "a state_dict saved with torch.save") -> Any:
    """``torch.load`` a file on CPU with ``weights_only=True``; any failure becomes an :class:`AdplgError` naming
    the file and what was ``expected`` in it."""
    if not path.exists():
        raise AdplgError(f"{what} file {path}: not found")
    if not path.is_file():
        raise AdplgError(f"{what} file {path}: expected a file, got a directory or special file")
    if is_torchscript_archive(path):
        raise AdplgError(f"{what} file {path}: a TorchScript archive (as OpenAI's CLIP ViT-B-16.pt is), expected "
                         f"{expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # Arbitrary or truncated bytes make the unpickler fail with many different exception types.
    except Exception as exc:
        raise AdplgError(f"{what} file {path}: cannot be read with torch.load ({short_reason(exc)}); "
                         f"expected {expected}") from exc


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``<name>/constants.pkl`` entry; ``torch.save`` files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def backbone_of_state(state: Mapping[str, Any]) -> str | None:
    """Which known backbone a state_dict's keys belong to: ``"clip"`` (OpenAI ``visual.*`` or Hugging Face
    ``vision_model.*`` keys), ``"i3d"`` (pytorch-i3d ``Mixed_*`` / ``logits.conv3d`` keys), else None."""
    keys = list(state)
    if any(k.startswith(("visual.", "vision_model.")) for k in keys):
        return "clip"
    if any(k.startswith(("Mixed_", "logits.conv3d")) for k in keys):
        return "i3d"
    return None


def short_reason(exc: Exception) -> str:
    """The informative part of a ``torch.load`` (or safetensors) failure, on one line: the weights-only unpickler's
    own reason when there is one, else the first line. Torch's advice to re-load with ``weights_only=False`` (which
    runs arbitrary code from the file) never appears: it would be bad advice here."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "no details"
    if "weights_only" in first and "False" in first:  # the advice without the unpickler's reason
        first = "the file holds objects other than tensors, which a weights-only load refuses"
    return f"{type(exc).__name__}: {first}"


def unwrap_state_dict(obj: Any, path: Path, what: str) -> dict[str, Tensor]:
    """Accept a plain state_dict, a dict with a ``state_dict`` entry, and ``module.``-prefixed keys
    (``nn.DataParallel``); return a plain ``{key: tensor}`` dict."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise AdplgError(f"{what} file {path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    state = {str(key): value for key, value in obj.items() if isinstance(value, Tensor)}
    if not state:
        raise AdplgError(f"{what} file {path}: expected a state_dict (a dict of tensors), found no tensors")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def state_dict_problems(expected: Mapping[str, Tensor], actual: Mapping[str, Tensor]) -> list[str]:
    """Every difference between the keys and shapes a model expects and those a checkpoint holds: missing keys,
    unexpected keys and shape mismatches, one message each (in the model's key order, then unexpected keys)."""
    problems: list[str] = []
    for key, want in expected.items():
        if key not in actual:
            problems.append(f"missing key {key} (expected shape {tuple(want.shape)})")
        elif tuple(actual[key].shape) != tuple(want.shape):
            problems.append(f"expected key {key} of shape {tuple(want.shape)}, got {tuple(actual[key].shape)}")
    problems.extend(f"unexpected key {key} of shape {tuple(actual[key].shape)}" for key in actual
                    if key not in expected)
    return problems


def raise_if_problems(problems: list[str], path: Path | str, what: str) -> None:
    """Raise one :class:`AdplgError` listing every problem, or do nothing if there are none."""
    if not problems:
        return
    if len(problems) == 1:
        raise AdplgError(f"{what} file {path}: {problems[0]}")
    lines = "\n".join(f"  - {problem}" for problem in problems)
    raise AdplgError(f"{what} file {path}: {len(problems)} problems:\n{lines}")
