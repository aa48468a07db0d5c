"""Runtime helpers: the compute device, seeding, and the versions recorded with every run and output."""

from __future__ import annotations

import os
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
    """Seed Python's, NumPy's and torch's random generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` (``auto``: CUDA when available, else CPU); an unknown or absent device is an error."""
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

    from adplg._version import __version__

    commit = None
    try:
        repo = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"adplg": __version__, "git_commit": commit, "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": numpy.__version__, "sklearn": sklearn.__version__,
            "platform": platform.platform(), "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", **cpu_details()}


def cpu_details() -> dict[str, Any]:
    """What decides CPU float rounding, and so whether two machines give bit-identical training runs: the CPU model,
    the kernels torch dispatches to (``cpu_capability``: AVX2, AVX512...), the BLAS torch was built with, and the
    environment variables that pin MKL's / oneDNN's code paths (``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``) or the thread
    counts. (The thread count in use, which changes reduction order too, is ``torch.get_num_threads()``; it is left
    out here because it may differ between the processes of one run, e.g. extraction workers.)"""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for part in config.replace(",", "\n").split() if part.startswith("BLAS_INFO=")),
                None)
    env = {k: os.environ[k] for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
           if k in os.environ}
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas, "deterministic_algorithms":
            torch.are_deterministic_algorithms_enabled(), "numerics_env": env}
