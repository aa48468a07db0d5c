"""Acceptance: on synthetic UCF-format data the full pipeline beats a per-snippet logistic regression (frame AUC,
both computed here on the same data; the last step is used, no selection on the test set)."""

import json

import numpy as np
import pytest

from adplg.demo import run_demo, train_and_compare


@pytest.mark.slow
def test_demo_beats_logistic_regression(tmp_path, capsys):
    first = run_demo(tmp_path / "demo", seed=0, progress=False)
    out = capsys.readouterr().out
    assert "per-snippet logistic regression" in out and "score plot" in out
    run_dir = tmp_path / "demo" / first["run_dir"].split("/")[-1]
    assert (run_dir / "scores.png").stat().st_size > 10_000
    assert json.loads((run_dir / "demo_results.json").read_text())["adplg"]["auc"] == first["adplg"]["auc"]
    second = train_and_compare(tmp_path / "seed1", seed=1)
    ours = np.mean([first["adplg"]["auc"], second.ours["auc"]])
    baseline = np.mean([first["logistic_regression"]["auc"], second.baseline["auc"]])
    print(f"ADPLG-VAD {ours:.4f} vs logistic regression {baseline:.4f}")
    assert ours > baseline + 0.02
