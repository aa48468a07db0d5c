"""The README's Python example runs as written (the block between the ``<!-- python-api -->`` markers), in a fresh
folder, and does what its comments say."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python() -> str:
    block = re.search(r"<!-- python-api -->\s*```python\n(.*?)```\s*<!-- /python-api -->", README.read_text(), re.S)
    assert block, "README.md: no ```python block between <!-- python-api --> and <!-- /python-api -->"
    return block.group(1)


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_python(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    run, result, rules = namespace["run"], namespace["result"], namespace["rules"]
    assert run.checkpoint.is_file() and run.run_dir.parent == Path("runs")
    assert 0.5 < run.metrics["auc"] <= 1.0  # the synthetic anomalies are learnable
    assert (run.checkpoint.parent / "last.alerts.yaml").is_file() and rules.calibration["achieved_far"] <= 0.05
    assert (tmp_path / "scores" / "summary.json").is_file()
    assert result.out_dir == run.run_dir / "tests" / "last" and (result.out_dir / "scores.png").is_file()
    assert abs(result.metrics["auc"] - run.metrics["auc"]) < 1e-6  # the same weights, the same test set
    assert "Arson" in capsys.readouterr().out
