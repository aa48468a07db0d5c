"""Shared fixtures. Real third-party data is read in place from ``../shared`` beside the checkout (or
``$ADPLG_SHARED``); tests that need it skip cleanly when it is absent."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the suite in one worker per core (pytest-xdist): one torch thread per worker (and for the
    # commands it starts) keeps the workers from fighting over the cores, where two threads each are several times
    # slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def shared_dir() -> Path:
    return Path(os.environ.get("ADPLG_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder not found at {root}")
    return root


@pytest.fixture(scope="session")
def official_lists(shared) -> Path:
    path = shared / "data" / "labels" / "adplg_official_lists"
    if not path.is_dir():
        pytest.skip(f"official list files not found at {path}")
    return path


@pytest.fixture(scope="session")
def label_npz(shared):
    """``load(rel) -> {name: array}``: an ``.npz`` of ``shared/data/labels/<rel>`` (skips when it is absent)."""
    import numpy as np

    def load(rel: str) -> dict:
        path = shared / "data" / "labels" / rel
        if not path.is_file():
            pytest.skip(f"{path} not found")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    return load


@pytest.fixture(scope="session")
def parity_dir(shared) -> Path:
    path = shared / "parity"
    if not (path / "expected_outputs.npz").is_file():
        pytest.skip(f"parity fixture not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``make(feature_dim) -> (checkpoint path, synthetic dataset)``: demo-cpu-small trained for 60 steps on a small
    one-crop synthetic UCF-format set with ``feature_dim``-d features (cached per dimension for the session)."""
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set, build_train_set
    from adplg.data.synthetic import generate_synthetic_ucf
    from adplg.training.engine import Trainer, create_run_dir

    cache = {}

    def make(feature_dim: int = 64):
        if feature_dim not in cache:
            root = tmp_path_factory.mktemp(f"tiny{feature_dim}")
            data = generate_synthetic_ucf(root / "data", num_train_normal=8, num_train_abnormal=8, num_test_normal=60,
                                          num_test_abnormal=4, feature_dim=feature_dim, crops=1, max_snippets=100,
                                          seed=3)
            cfg = build_config("demo-cpu-small", overrides=[
                f"data.list_dir={data.root}", f"data.feature_dim={feature_dim}", "data.train_crops=1",
                "data.test_crops=1", f"output_dir={root}", "train.progress=false", "train.batch_size=4",
                "train.num_iters=60", "train.warm_up=20", "train.eval_every=60", "train.log_every=30"])
            run = create_run_dir(cfg, root / "run")
            Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False), run).fit()
            cache[feature_dim] = (run / "checkpoints" / "last.safetensors", data)
        return cache[feature_dim]

    return make


@pytest.fixture(scope="session")
def r1(shared):
    """``(config, (train, test))`` of the R1 benchmark (real UCF-Crime I3D logits, read in place) under
    ``r1-cpu-small``; skips when the data are absent."""
    from adplg.config import build_config
    from adplg.data.r1 import R1_FOLDER, load_r1

    folder = shared / R1_FOLDER
    if not (folder / "test.npz").is_file():
        pytest.skip(f"R1 data not found at {folder}")
    cfg = build_config("r1-cpu-small")
    return cfg, load_r1(cfg, folder)
