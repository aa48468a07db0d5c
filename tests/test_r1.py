"""R1 (real UCF-Crime I3D logits, read in place): the loader reproduces the benchmark's protocol, and a CPU quick
run of the full pipeline learns: far above chance and level with the per-snippet logistic regression."""

import os
import sys
from pathlib import Path

import pytest

from adplg.config import build_config
from adplg.data.r1 import R1_FOLDER, load_r1

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def r1(shared):
    folder = shared / R1_FOLDER
    if not (folder / "test.npz").is_file():
        pytest.skip(f"R1 data not found at {folder}")
    cfg = build_config("r1-cpu-small")
    return cfg, load_r1(cfg, folder)


def test_r1_protocol(r1):
    cfg, (train, test) = r1
    assert len(train.items) == 659 and int(train.labels.sum()) == 339
    assert tuple(train.features.shape) == (659, 64, 400)
    assert len(test.videos) == 284 and len(test.gt.labels) == 801_841
    assert test.layout.kind == "spread"
    # Abuse028: 1,412 frames, anomaly 165-240 (1-based inclusive) -> frames 164..239
    v = [x.name for x in test.videos].index("Abuse028_x264")
    gt = test.gt.labels[test.gt.offsets[v]:test.gt.offsets[v + 1]]
    assert len(gt) == 1412 and gt.sum() == 76 and gt[164] == 1 and gt[163] == 0 and gt[240] == 0


@pytest.mark.slow
def test_r1_quick_run_beats_logistic_regression(r1, tmp_path):
    import json

    import r1 as runner

    result = runner.main(["--preset", "r1-cpu-small", "--seeds", "0", "--json", str(tmp_path / "r1.json")])
    ours, baseline = result["runs"][0][1]["last"]["test"]["auc"], result["baseline"]["auc"]
    written = json.loads((tmp_path / "r1.json").read_text())  # --json: what a script comparing runs reads
    seed = written["seeds"][0]
    assert seed["seed"] == 0 and seed["last"]["auc"] == ours and written["baselines"]["logistic_regression"]["auc"] == \
        baseline and written["baselines"]["mil_mean_of_seeds"]["auc"] == result["mil"]["auc"] == seed["mil"]["auc"]
    assert seed["beats_baselines"] == (ours > max(baseline, seed["mil"]["auc"]))
    assert set(seed["loss_checksums"]) == {"1", "10", "100"} and len(seed["loss_trace"]) == 100
    assert written["machine"]["cpu_capability"] and written["machine"]["torch_threads"] >= 1
    # Not "above the baseline on this seed": one seed's last-step AUC moves by ~0.02 between CPUs (issue 13:
    # 0.6957 on the development CPU, below 0.6714 for some seeds elsewhere), while a broken pipeline gives ~0.5.
    assert ours > 0.62 and ours > baseline - 0.03, (ours, baseline)


@pytest.mark.slow
def test_r1_seeds_in_parallel_processes_match_a_run_in_this_process(r1, tmp_path):
    import r1 as runner
    import torch

    quick = ["train.num_iters=24", "train.warm_up=12", "train.eval_every=12"]
    parallel = runner.main(["--preset", "r1-cpu-small", "--seeds", "1", "0", "--jobs", "2", *quick])
    assert [seed for seed, _ in parallel["runs"]] == [1, 0]  # reported in the order asked
    summary = dict(parallel["runs"])[1]
    threads = summary["torch_threads"]
    assert threads == max(1, (os.cpu_count() or 1) // 2)
    _, (train, test) = r1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:  # the same seed, run here with the worker's thread count: the same numbers, bit for bit
        here = runner.run_task("run", 1, "r1-cpu-small", quick, 1, tmp_path, train, test)
    finally:
        torch.set_num_threads(before)
    assert here["loss_checksums"] == summary["loss_checksums"]
    assert here["last"]["test"]["auc"] == summary["last"]["test"]["auc"]
    assert dict(parallel["runs"])[0]["mil"]["auc"] != summary["mil"]["auc"]  # each seed has its own MIL baseline
