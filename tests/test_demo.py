"""Acceptance: on synthetic UCF-format data the full pipeline beats a per-snippet logistic regression (frame AUC,
both computed here on the same data; the last step is used, no selection on the test set). And what a new user
meets: the demo's output explains its metrics and the next commands, its files are where the README says, and its
folder can be moved."""

import contextlib
import glob
import io
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from adplg.cli.main import main
from adplg.demo import METRIC_COLUMNS, run_demo, train_and_compare


@dataclass(frozen=True)
class DemoRun:
    root: Path  # the working folder of `adplg demo`: it wrote runs/demo there
    out: str  # what it printed


@pytest.fixture(scope="module")
def demo_seed0(tmp_path_factory) -> DemoRun:
    """What `make demo` runs (`adplg demo`, seed 0, the preset's steps), once for the tests of this file."""
    root = tmp_path_factory.mktemp("make-demo")
    printed, here = io.StringIO(), os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(printed):
            assert main(["demo", "--quiet"]) == 0
    finally:
        os.chdir(here)
    return DemoRun(root=root, out=printed.getvalue())


@pytest.mark.slow
def test_demo_beats_logistic_regression(demo_seed0, tmp_path):
    demo = demo_seed0.root / "runs" / "demo"
    first = json.loads((demo / "demo_results.json").read_text())
    assert "per-snippet logistic regression" in demo_seed0.out and "score plot" in demo_seed0.out
    assert f"{first['adplg']['auc']:7.4f}" in demo_seed0.out
    assert (demo / "scores.png").stat().st_size > 10_000
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


# ------------------------------------------------------------------ the README's worked example on this demo
README = Path(__file__).resolve().parents[1] / "README.md"


def worked_example() -> tuple[list[str], str]:
    """``(commands, the whole block)`` of the README's worked example: the bash block after "Worked example"."""
    text = README.read_text()
    block = re.search(r"Worked example, on what `make demo` leaves.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md: no ```bash block after 'Worked example, on what `make demo` leaves'"
    lines, joined = [], ""
    for line in block.group(1).splitlines():
        code = line.split(" #")[0].rstrip() if not line.startswith("#") else ""
        joined += code.removesuffix("\\") + " " if code.endswith("\\") else code
        if code and not code.endswith("\\"):
            lines.append(joined.strip())
            joined = ""
    return lines, block.group(1)


def expand(command: str, variables: dict[str, str]) -> list[str]:
    """A README command line as argv: ``$VAR`` substituted, globs expanded like bash (sorted)."""
    words = []
    for word in shlex.split(command):
        for name, value in variables.items():
            word = word.replace(f"${name}", value)
        words.extend(sorted(glob.glob(word)) if any(c in word for c in "*?[") else [word])
    return words


def quoted(pattern: str, block: str) -> tuple[float, ...]:
    """The numbers of ``pattern`` in the block's comments (joined across comment lines)."""
    found = re.search(pattern, re.sub(r"\s*\n#\s*", " ", block), re.S)
    assert found, f"README.md worked example: no numbers matching {pattern!r}"
    return tuple(float(g) for g in found.groups())


@pytest.mark.slow
def test_readme_worked_example_gives_the_quoted_numbers(demo_seed0, monkeypatch, capsys):
    commands, block = worked_example()
    assert [c.split()[:2] for c in commands if c.startswith("adplg")] == [
        ["adplg", "calibrate"], ["adplg", "score"], ["adplg", "score"]]
    tmp_path = demo_seed0.root
    monkeypatch.chdir(tmp_path)  # where `make demo` left runs/demo
    variables: dict[str, str] = {}
    for command in commands:
        if "=" in command.split()[0]:  # CK=$(ls -d runs/demo/demo-cpu-small-seed0-*)/checkpoints/...
            name, value = command.split("=", 1)
            value = re.sub(r"\$\(ls -d ([^)]*)\)", lambda m: glob.glob(m.group(1))[0], value)
            variables[name] = value
            continue
        argv = expand(command, variables)[1:]
        assert main(argv) == 0, command
        if argv[0] == "calibrate":
            calibrated = capsys.readouterr().out
        elif "held-out" in argv:
            held_out = (tmp_path / "held-out" / "summary.json").read_text()

    calibration_line = (r"on threshold ([\d.]+), off ([\d.]+): false-alarm rate ([\d.]+)% \(target ([\d.]+)%; "
                        r"95% prediction interval ([\d.]+)%-([\d.]+)%\), ([\d.]+) alerts/hour on ([\d.]+) h of "
                        r"(\d+) normal")
    on, off, far, target, low, high, per_hour, hours, videos = quoted(calibration_line, block)
    printed = re.search(calibration_line, re.sub(r"\s+", " ", calibrated))
    assert printed, calibrated
    got = tuple(float(g) for g in printed.groups())
    # the README's figures are one CPU's: another CPU's float rounding trains a slightly different demo model, whose
    # calibrated thresholds (seen: 0.7826 and 0.7900) and interval bounds move a little; the rest must agree
    assert got[2:4] + got[5:] == (far, target, high, per_hour, hours, videos), calibrated
    assert abs(got[0] - on) < 0.02 and abs(got[1] - off) < 0.02 and abs(got[4] - low) < 1.0, calibrated
    assert "note: little footage" in calibrated  # "(+ a note that 7 videos is little footage)"

    import json

    (share,) = quoted(r"held-out: ([\d.]+)% of frames inside an alert", block)
    summary = json.loads(held_out)["videos"]
    measured = sum(v["alert_seconds"] for v in summary) / sum(v["duration_s"] for v in summary)
    assert f"{measured:.1%}" == f"{share:.1f}%"
    assert low / 100 <= measured <= high / 100  # "inside the interval"
