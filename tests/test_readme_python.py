"""The README's Python example runs as written (the block between the ``<!-- python-api -->`` markers), in a fresh
folder, does what its comments say, and warns about nothing: no adplg warning in the log (such as a frame rate
assumed video by video) and no Python warning raised from adplg's code."""

import logging
import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python() -> str:
    block = re.search(r"<!-- python-api -->\s*```python\n(.*?)```\s*<!-- /python-api -->", README.read_text(), re.S)
    assert block, "README.md: no ```python block between <!-- python-api --> and <!-- /python-api -->"
    return block.group(1)


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with caplog.at_level(logging.WARNING, logger="adplg"), warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        exec(compile(readme_python(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("adplg")]
    assert not logged, logged
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in raised if "/adplg/" in w.filename.replace("\\", "/")]
    assert not ours, ours
    run, result, rules = namespace["run"], namespace["result"], namespace["rules"]
    assert run.checkpoint.is_file() and run.run_dir.parent == Path("runs")
    assert 0.5 < run.metrics["auc"] <= 1.0  # the synthetic anomalies are learnable
    assert (run.checkpoint.parent / "last.alerts.yaml").is_file() and rules.calibration["achieved_far"] <= 0.05
    assert (tmp_path / "scores" / "summary.json").is_file()
    assert result.out_dir == run.run_dir / "tests" / "last" and (result.out_dir / "scores.png").is_file()
    assert abs(result.metrics["auc"] - run.metrics["auc"]) < 1e-6  # the same weights, the same test set
    assert "Arson" in capsys.readouterr().out
