"""Acceptance: on synthetic UCF-format data the full pipeline beats a per-snippet logistic regression (frame AUC,
both computed here on the same data; the last step is used, no selection on the test set). And what a new user
meets: the demo's output explains its metrics and the next commands, its files are where the README says, and its
folder can be moved."""

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from adplg.cli.main import main
from adplg.demo import METRIC_COLUMNS, run_demo, train_and_compare


@pytest.mark.slow
def test_demo_beats_logistic_regression(tmp_path, capsys):
    first = run_demo(tmp_path / "demo", seed=0, progress=False)
    out = capsys.readouterr().out
    assert "per-snippet logistic regression" in out and "score plot" in out
    assert (tmp_path / "demo" / "scores.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "demo" / "demo_results.json").read_text())["adplg"]["auc"] == first["adplg"]["auc"]
    second = train_and_compare(tmp_path / "seed1", seed=1)
    ours = np.mean([first["adplg"]["auc"], second.ours["auc"]])
    baseline = np.mean([first["logistic_regression"]["auc"], second.baseline["auc"]])
    print(f"ADPLG-VAD {ours:.4f} vs logistic regression {baseline:.4f}")
    assert ours > baseline + 0.02


def printed_command(out: str, name: str) -> list[str]:
    """The argv (without ``adplg``) of the demo's suggested ``adplg <name> ...`` line, its comment removed."""
    line = next(line.strip() for line in out.splitlines() if line.strip().startswith(f"adplg {name} "))
    return shlex.split(line.split("  #")[0])[1:]


def test_short_demo_explains_itself_and_its_folder_can_be_moved(tmp_path, capsys):
    demo = tmp_path / "runs" / "demo"
    result = run_demo(demo, num_iters=6, progress=False)
    out = capsys.readouterr().out
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == demo and (demo / "scores.png").is_file()
    assert json.loads((demo / "demo_results.json").read_text())["run_dir"] == str(run_dir)
    # one line per metric, with what to expect; the table's numbers are rounded
    for label, _ in METRIC_COLUMNS:
        assert any(line.startswith(f"  {label} ") for line in out.splitlines()), label
    assert "chance" in out and "0.5" in out
    assert f"{result['adplg']['auc']:7.4f}" in out and str(result["adplg"]["auc"]) not in out
    # the next commands name this run's real paths, and the first ones run as printed
    for name in ("test", "calibrate", "score", "report"):
        assert str(run_dir) in " ".join(printed_command(out, name)) or name == "report", name
    assert main(printed_command(out, "test")) == 0
    assert main(printed_command(out, "score")) == 0 and (demo / "scores" / "summary.json").is_file()
    capsys.readouterr()

    # the lists name their files relative to the list folder: the whole folder can be moved
    lines = (demo / "data" / "UCF_Train.list").read_text().split()
    assert lines and all(not Path(line).is_absolute() and line.startswith("train/") for line in lines)
    moved = tmp_path / "elsewhere"
    shutil.move(demo, moved)
    moved_run = moved / run_dir.name
    assert main(["test", "--model_file", str(moved_run), "--list_dir", str(moved / "data"), "--no_plot",
                 "--out", str(tmp_path / "moved-test")]) == 0
    moved_auc = json.loads((tmp_path / "moved-test" / "results.json").read_text())["metrics"]["auc"]
    assert moved_auc == pytest.approx(result["adplg"]["auc"], abs=1e-6)
    assert main(["doctor", str(moved / "data"), "--preset", "demo-cpu-small", "--quiet"]) == 0
    assert "verdict: HEALTHY (train, test)" in capsys.readouterr().out
