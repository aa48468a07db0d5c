"""One call from checkpoints to test-set metrics, scores and a plot (``adplg test``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adplg.config import Config

TEST_OUTPUT_NAMES = ("results.json", "scores.npz", "scores.png")  # what ``adplg test`` writes into its folder


@dataclass(kw_only=True)
class TestResult:
    """Frame metrics of a checkpoint (or an ensemble) on a test set, and where they were written."""

    metrics: dict
    snippet_scores: list[np.ndarray]  # per test video, [T_v]
    out_dir: Path
    config: Config
    time_to_detect: dict = field(default_factory=dict)  # adplg.evaluation.detection.time_to_detect's result


def default_output(model_files: Sequence[str | Path]) -> Path:
    """Inside the run when the (first) checkpoint belongs to one: ``<run>/tests/<checkpoint>[-ensembleK]``;
    otherwise ``test-<checkpoint>`` beside the file."""
    from adplg.checkpoints.format import checkpoint_file

    first = Path(model_files[0])
    weights = checkpoint_file(first)
    suffix = f"-ensemble{len(model_files)}" if len(model_files) > 1 else ""
    if weights.parent.name == "checkpoints" and (weights.parent.parent / "config.yaml").is_file():
        return weights.parent.parent / "tests" / f"{weights.stem}{suffix}"
    return weights.parent / f"test-{weights.stem}{suffix}"


def test_checkpoints(model_files: Sequence[str | Path], *, preset: str | None = None,
                     config_file: str | Path | None = None, overrides: Sequence[str] = (),
                     out_dir: str | Path | None = None, plot: bool = True, overwrite: bool = False) -> TestResult:
    """Evaluate our checkpoint(s) or the authors' ``*_model_s_*.pkl`` on the config's test set: frame metrics and the
    time to detect at 1% and 5% false-alarm rate (:func:`~adplg.evaluation.detection.detection_on_test_set`).

    Writes ``results.json`` (``metrics``, ``time_to_detect``), ``scores.npz`` and (``plot``) ``scores.png`` into
    ``out_dir`` (default :func:`default_output`), checked to be a writable folder before any compute; an ``out_dir``
    holding files of :data:`TEST_OUTPUT_NAMES` that an earlier ``adplg test`` did not write, or another command's
    folder, is refused (:func:`~adplg.io.check_output_owner`), unless ``overwrite``. Several files score their mean
    (an ensemble)."""
    from adplg.checkpoints.load import load_scorer
    from adplg.data.datasets import build_test_set
    from adplg.evaluation.detection import detection_on_test_set
    from adplg.evaluation.evaluate import evaluate, write_results
    from adplg.evaluation.plots import plot_test_examples
    from adplg.io import check_output_dir, check_output_owner, mark_output_dir
    from adplg.runtime import resolve_device

    files = [str(f) for f in model_files]
    if out_dir is not None:  # before any compute: the output folder can be written
        check_output_owner(out_dir, "test", TEST_OUTPUT_NAMES, what="test output folder (out_dir)",
                           overwrite=overwrite)
    cfg, net_s = load_scorer(files, preset, None if config_file is None else str(config_file), list(overrides))
    out = Path(out_dir) if out_dir is not None else check_output_dir(default_output(files), "test output folder")
    device = resolve_device(cfg.train.device)
    test = build_test_set(cfg, progress=cfg.train.progress)
    e = cfg.eval
    metrics, scores = evaluate(net_s.to(device), test, device, e.far_threshold, progress=cfg.train.progress,
                               precision=e.precision, batch_snippets=e.batch_snippets, smooth_window=e.smooth_window,
                               smooth_mode=e.smooth_mode)
    detection = detection_on_test_set(test, scores, cfg)
    mark_output_dir(out, "test")
    write_results(out, test, metrics, scores,
                  extra={"time_to_detect": detection, "model_file": files, "config": cfg.to_dict()})
    if plot:
        plot_test_examples(out / "scores.png", test, scores,
                           title=f"{Path(files[0]).name}: frame {e.primary} {metrics.get(e.primary, float('nan')):.3f}")
    return TestResult(metrics=metrics, snippet_scores=scores, out_dir=out, config=cfg, time_to_detect=detection)


# not pytest tests, despite their names (setattr: mypy knows no such attribute of a function or a class)
setattr(test_checkpoints, "__test__", False)
setattr(TestResult, "__test__", False)
