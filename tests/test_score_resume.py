"""A local ``adplg score`` killed part-way resumes: the re-run of the same command skips the videos finished before
the kill (it says so, and leaves their files untouched) and the folder ends up with the files an uninterrupted run
writes.

The model is an untrained small scorer for 64-d features with non-trivial weights (no training needed: only the
files matter here); the folder holds many short feature videos, each plotted, so the run takes seconds and the kill
lands after its first video and long before its last."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from shared_helpers import untrained_checkpoint

from adplg.cli.main import main

DIM = 64
VIDEOS = 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"), [f"data.feature_dim={DIM}", "data.test_crops=1"])


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    for k in range(VIDEOS):
        snippets = int(rng.integers(8, 40))
        np.save(folder / f"cam{k:02d}.npy", rng.normal(size=(snippets, DIM)).astype(np.float32))
    return folder


def _command(features: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["score", str(features), "--checkpoint", str(checkpoint), "--out", str(out), "--fps", "25", "--quiet",
            "--threshold", "0.5"]


def _finished(out: Path) -> set[str]:
    """Videos whose three outputs are all in place (the JSON holding the score fingerprint)."""
    names = set()
    for record in out.glob("cam*.json"):
        name = record.stem
        if (out / f"{name}.csv").is_file() and (out / f"{name}.png").is_file():
            names.add(name)
    return names


def _mtimes(out: Path, names: set[str]) -> dict[str, int]:
    return {f"{n}{s}": (out / f"{n}{s}").stat().st_mtime_ns for n in names for s in (".csv", ".json", ".png")}


def test_a_killed_local_score_resumes_and_equals_an_uninterrupted_run(features, checkpoint, tmp_path, capsys):
    out = tmp_path / "resumed"
    proc = subprocess.Popen([sys.executable, "-m", "adplg.cli.main", *_command(features, checkpoint, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not _finished(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[0][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _finished(out)
    assert finished and len(finished) < VIDEOS, finished  # killed part-way
    assert not (out / "summary.json").exists()
    before = _mtimes(out, finished)
    unfinished = sorted({f"cam{k:02d}" for k in range(VIDEOS)} - finished)[0]
    (out / f".{unfinished}.json.k1ll3d.tmp").write_text("{")  # as a kill during the write of its JSON leaves it

    assert main(_command(features, checkpoint, out)) == 0  # the same command again
    printed = capsys.readouterr().out
    match = re.search(r"scored (\d+) video\(s\), skipped (\d+) scored already, 0 failed on this process", printed)
    assert match, printed
    assert (int(match.group(1)), int(match.group(2))) == (VIDEOS - len(finished), len(finished))
    assert _mtimes(out, finished) == before  # the videos finished before the kill were not written again

    reference = tmp_path / "uninterrupted"
    assert main(_command(features, checkpoint, reference)) == 0
    assert f"scored {VIDEOS} video(s), skipped 0 scored already, 0 failed" in capsys.readouterr().out
    files = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in out.iterdir()) == files  # no temporaries of the killed run left either
    assert len(files) == 3 * VIDEOS + 2  # CSV, JSON, PNG per video; summary.json; the output folder's marker
    for name in files:
        if name.endswith(".csv"):
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
        elif name.endswith(".json"):  # no wall-clock fields: the records (and the fingerprints) are equal
            assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name
    summary = json.loads((out / "summary.json").read_text())
    assert [v["video"] for v in summary["videos"]] == [f"cam{k:02d}" for k in range(VIDEOS)]
