"""Runtime helpers: the compute device, seeding, and the versions recorded with every run and output."""

from __future__ import annotations

import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adplg.errors import AdplgError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AdplgError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AdplgError(f"device {name!r}: CUDA is not available on this machine")
    return device


def versions() -> dict[str, Any]:
    """Versions of everything that can change a result."""
    import numpy
    import sklearn

    import adplg

    commit = None
    try:
        repo = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"adplg": adplg.__version__, "git_commit": commit, "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": numpy.__version__, "sklearn": sklearn.__version__,
            "platform": platform.platform(), "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
