"""Shared fixtures. Real third-party data is read in place from ``../shared`` beside the checkout (or
``$ADPLG_SHARED``); tests that need it skip cleanly when it is absent."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
def parity_dir(shared) -> Path:
    path = shared / "parity"
    if not (path / "expected_outputs.npz").is_file():
        pytest.skip(f"parity fixture not found at {path}")
    return path
