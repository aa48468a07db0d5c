"""The README's worked example (section "From a video to alerts") runs as written on what ``make demo`` (``adplg
demo``) leaves behind, and gives the numbers the README quotes: the calibrate command's thresholds, false-alarm rate,
interval, alerts per hour and footage, and the held-out share of alerted time."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest

from adplg.cli.main import main

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
def test_readme_worked_example_gives_the_quoted_numbers(tmp_path, monkeypatch, capsys):
    commands, block = worked_example()
    assert [c.split()[:2] for c in commands if c.startswith("adplg")] == [
        ["adplg", "calibrate"], ["adplg", "score"], ["adplg", "score"]]
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet"]) == 0  # what `make demo` runs: runs/demo
    capsys.readouterr()
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

    on, off, far, target, low, high, per_hour, hours, videos = quoted(
        r"on threshold ([\d.]+), off ([\d.]+): false-alarm rate ([\d.]+)% \(target ([\d.]+)%; 95% prediction "
        r"interval ([\d.]+)%-([\d.]+)%\), ([\d.]+) alerts/hour on ([\d.]+) h of (\d+) normal", block)
    line = re.sub(r"\s+", " ", calibrated)
    assert (f"on threshold {on:.4f}, off {off:.4f}: false-alarm rate {far:.4f}% (target {target:.4f}%; 95% "
            f"prediction interval {low:.4f}%-{high:.4f}%), {per_hour:.2f} alerts/hour on {hours:.2f} h of "
            f"{videos:.0f} normal video(s)") in line, calibrated
    assert "note: little footage" in calibrated  # "(+ a note that 7 videos is little footage)"

    import json

    (share,) = quoted(r"held-out: ([\d.]+)% of frames inside an alert", block)
    summary = json.loads(held_out)["videos"]
    measured = sum(v["alert_seconds"] for v in summary) / sum(v["duration_s"] for v in summary)
    assert f"{measured:.1%}" == f"{share:.1f}%"
    assert low / 100 <= measured <= high / 100  # "inside the interval"
