"""R1 (real UCF-Crime I3D logits, read in place): the loader reproduces the benchmark's protocol, and a CPU quick
run of the full pipeline learns: far above chance and level with the per-snippet logistic regression."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


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

    # half the preset's 1,500 steps (250 branch-2 steps after the warm-up, where R1's branch 2 is near its best):
    # 0.6828 at step 750 against 0.6714 for the logistic regression (1 thread, AMD EPYC), half the suite's long pole
    result = runner.main(["--preset", "r1-cpu-small", "--seeds", "0", "--json", str(tmp_path / "r1.json"),
                          "--mil-steps", "250", "train.num_iters=750", "train.eval_every=250"])
    ours, baseline = result["runs"][0][1]["last"]["test"]["auc"], result["baseline"]["auc"]
    written = json.loads((tmp_path / "r1.json").read_text())  # --json: what a script comparing runs reads
    seed = written["seeds"][0]
    assert seed["seed"] == 0 and seed["last"]["auc"] == ours and written["baselines"]["logistic_regression"]["auc"] == \
        baseline and written["baselines"]["mil_mean_of_seeds"]["auc"] == result["mil"]["auc"] == seed["mil"]["auc"]
    assert seed["beats_baselines"] == (ours > max(baseline, seed["mil"]["auc"]))
    assert set(seed["loss_checksums"]) == {"1", "10", "100"} and len(seed["loss_trace"]) == 100
    detection = seed["time_to_detect"]  # of the last evaluation's scores
    assert set(detection) == {"far_1%", "far_5%"} and detection["far_5%"]["achieved_far"] <= 0.05
    assert detection["far_5%"]["intervals"] > 100 and detection["far_5%"]["detected"] >= detection["far_1%"]["detected"]
    assert written["machine"]["cpu_capability"] and written["machine"]["torch_threads"] >= 1
    assert written["mil_steps"] == 250  # a quick MIL baseline (the tables' is 1,000 steps), said in the results
    # Not "above the baseline on this seed": one seed's last-step AUC moves by ~0.02 between CPUs (issue 13:
    # 0.6957 on the development CPU, below 0.6714 for some seeds elsewhere), while a broken pipeline gives ~0.5.
    assert ours > 0.62 and ours > baseline - 0.03, (ours, baseline)
