"""R1 seeds trained side by side in worker processes (benchmarks/r1.py --jobs) give, bit for bit, the numbers of the
same seed trained in this process. A file of its own, so that the test suite's workers run it beside the quick run of
test_r1.py."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_r1_seeds_in_parallel_processes_match_a_run_in_this_process(r1, tmp_path):
    import r1 as runner
    import torch

    quick = ["train.num_iters=24", "train.warm_up=12", "train.eval_every=12"]
    parallel = runner.main(["--preset", "r1-cpu-small", "--seeds", "1", "0", "--jobs", "2", "--mil-steps", "100",
                            *quick])
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
