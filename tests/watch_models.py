"""The small random checkpoint and backbone weights the ``adplg watch`` tests score with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from backbone_weights import write_random_clip


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A 512-d (CLIP-sized) demo-cpu-small model saved as our checkpoint, and tiny random CLIP weights. The model
    is randomly initialised (seeded), not trained: ``adplg.train`` takes over a minute on a busy 2-core CPU, and
    what is tested here is that online scoring reproduces the offline scores of the same model, not its accuracy."""
    root = tmp_path_factory.mktemp("watch")
    weights = write_random_clip(root / "ViT-B-16.pt", seed=1, width=32, layers=1)
    return SimpleNamespace(checkpoint=random_checkpoint(root / "ckpt")), weights


def random_checkpoint(folder: Path, *overrides: str) -> Path:
    """The seeded random 512-d demo-cpu-small model of ``clip_run``, saved with the config ``overrides``."""
    from adplg.checkpoints.format import save_checkpoint
    from adplg.config import build_config
    from adplg.models.build import build_snippet_branch, build_video_branch

    cfg = build_config("demo-cpu-small", overrides=["data.feature_dim=512", "data.train_crops=1",
                                                    "data.test_crops=1", *overrides])
    torch.manual_seed(0)
    return save_checkpoint(folder, net_v=build_video_branch(cfg), net_s=build_snippet_branch(cfg), step=0,
                           config=cfg.to_dict())
