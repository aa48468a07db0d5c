"""Numeric precision options: ``fp32`` (the faithful math), ``tf32`` (TF32 matmuls on CUDA), ``bf16`` (autocast)."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device | str, precision: str):
    """A context for forward passes: bf16 autocast when asked, TF32 matmuls for ``tf32``, else nothing."""
    device_type = torch.device(device).type
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
