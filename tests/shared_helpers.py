"""Helpers several test files share: a small untrained checkpoint, the comparison of two extraction folders, a free
port, and the skip of a test whose real part (a broker, a server) is missing."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch


def untrained_checkpoint(folder: Path, overrides: list[str]) -> Path:
    """A ``demo-cpu-small`` checkpoint (with ``overrides``) whose snippet branch is its seed-0 initialisation plus a
    little noise, so scores vary: no training needed. Returns the ``.safetensors`` path."""
    from adplg.checkpoints.format import save_checkpoint
    from adplg.config import build_config
    from adplg.models.build import build_snippet_branch, build_video_branch

    cfg = build_config("demo-cpu-small", overrides=overrides)
    torch.manual_seed(0)
    net_s = build_snippet_branch(cfg)
    with torch.no_grad():
        for parameter in net_s.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return save_checkpoint(folder / "tiny", net_v=build_video_branch(cfg), net_s=net_s, step=1, config=cfg.to_dict())


def assert_same_extraction(got: Path, want: Path, videos: int, crops: int) -> None:
    """Two ``adplg extract`` folders of ``videos`` videos of ``crops`` crops agree: the same files (no temporaries),
    bit-identical features, meta records equal but for the seconds they took, every other file byte-identical, and
    the same ``features.list`` (but for the folder), each crop file listed once."""
    names = sorted(p.relative_to(want).as_posix() for p in want.rglob("*") if p.is_file())
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == names  # no temporaries
    assert len([n for n in names if n.endswith(".npy")]) == crops * videos
    for name in names:
        if name.endswith(".npy"):
            a, b = np.load(got / name), np.load(want / name)
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), name
        elif name.startswith("meta/"):
            a, b = json.loads((got / name).read_text()), json.loads((want / name).read_text())
            assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0 and a == b, name
        elif name != "features.list":
            assert (got / name).read_bytes() == (want / name).read_bytes(), name
    listed = (got / "features.list").read_text().replace(str(got.resolve()), "<out>").splitlines()
    assert listed == (want / "features.list").read_text().replace(str(want.resolve()), "<out>").splitlines()
    assert len(listed) == len(set(listed)) == crops * videos  # every crop file once


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_real_part(why: str) -> None:
    """A real part the test drives is missing: skip here, fail under CI (``CI`` set), where ``.ci/run`` installs it."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
