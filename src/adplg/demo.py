"""``adplg demo``: synthetic UCF-format data -> the CPU-sized preset -> metrics against a baseline -> a score plot.

Everything runs offline on a CPU in a few minutes: the data are written in the real on-disk formats (official list
files, per-crop ``.npy``, ``UCF_Annotation.txt``) from real UCF-Crime video lengths and anomaly intervals.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from adplg.baselines import logistic_regression_baseline, mil_ranking_baseline
from adplg.config import Config, build_config, load_preset
from adplg.data.datasets import TestSet, TrainSet, build_test_set, build_train_set, data_manifest
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics
from adplg.evaluation.plots import plot_test_examples
from adplg.io import atomic_write_text, check_output_owner, mark_output_dir
from adplg.training.engine import Trainer, create_run_dir

DEMO_OUTPUT_NAMES = ("data",)  # the synthetic set the demo (re)writes; its run directories are new each time


def baseline_metrics(cfg: Config, train: TrainSet, test: TestSet) -> dict[str, float]:
    """Per-snippet logistic regression on the same pooled training crops (video labels only), scored like ours."""
    scores = logistic_regression_baseline(list(train.features.numpy()), train.labels.numpy(),
                                          [test.crops(v).mean(axis=0) for v in range(len(test.videos))],
                                          num_segments=None, seed=cfg.train.seed)
    return score_metrics(test, scores, cfg.eval.far_threshold)


def mil_metrics(cfg: Config, train: TrainSet, test: TestSet, seed: int | None = None) -> dict[str, float]:
    """Deep MIL ranking (Sultani et al.) on the same pooled training crops, each test video's crops averaged;
    ``seed`` (default ``train.seed``) seeds its initialisation and batches."""
    scores = mil_ranking_baseline(train.features.numpy(), train.labels.numpy(),
                                  [test.crops(v).mean(axis=0) for v in range(len(test.videos))],
                                  seed=cfg.train.seed if seed is None else seed)
    return score_metrics(test, scores, cfg.eval.far_threshold)


@dataclass
class Comparison:
    ours: dict  # the last evaluation's test metrics (no selection on the test set)
    baseline: dict
    trainer: Trainer
    test: TestSet
    mil: dict | None = None


def train_and_compare(out: Path, seed: int = 0, num_iters: int | None = None, progress: bool = False,
                      overrides: list[str] = (), preset: str = "demo-cpu-small", data: dict | None = None,
                      mil: bool = False, overwrite: bool = False) -> Comparison:
    """Generate the synthetic set for ``seed``, train ``preset`` on it, evaluate it and the logistic baseline (and,
    with ``mil``, the MIL ranking baseline). ``data``: options of :func:`generate_synthetic_ucf` (``crops``,
    ``feature_dim``, video counts); the config's feature size and crop counts follow them. An ``out`` holding a
    ``data`` folder an earlier demo did not write, or another command's folder, is refused before any compute
    (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
    out = check_output_owner(out, "demo", DEMO_OUTPUT_NAMES, what="demo output folder (out)", overwrite=overwrite)
    generator = inspect.signature(generate_synthetic_ucf).parameters
    data = {"feature_dim": generator["feature_dim"].default, "crops": generator["crops"].default, **(data or {})}
    options = [f"data.list_dir={out / 'data'}", f"train.seed={seed}", f"train.progress={progress}",
               f"output_dir={out}", f"data.feature_dim={data['feature_dim']}", f"data.train_crops={data['crops']}",
               f"data.test_crops={data['crops']}"]
    if num_iters is not None:  # a short demo keeps a third of its steps for branch 2 (warm_up < num_iters)
        warm_up = load_preset(preset)["train"]["warm_up"]
        options += [f"train.num_iters={num_iters}", f"train.warm_up={min(warm_up, num_iters // 3)}"]
    cfg = build_config(preset, overrides=[*options, *overrides])  # invalid settings stop before any work
    mark_output_dir(out, "demo")
    generate_synthetic_ucf(out / "data", seed=seed, **data)
    train, test = build_train_set(cfg, progress=False), build_test_set(cfg, progress=False)
    run_dir = create_run_dir(cfg)  # <out>/demo-cpu-small-seed<seed>-<time>
    manifest = data_manifest(cfg, train, test)
    if progress:
        print(f"synthetic data: {out / 'data'} ({len(train.items)} train crops, {len(test.videos)} test videos)")
        print(f"run directory:  {run_dir}")
    trainer = Trainer(cfg, train, test, run_dir, manifest=manifest)
    summary = trainer.fit()
    return Comparison(ours=summary["last"]["test"], baseline=baseline_metrics(cfg, train, test), trainer=trainer,
                      test=test, mil=mil_metrics(cfg, train, test) if mil else None)


def run_demo(out: Path, num_iters: int | None = None, seed: int = 0, progress: bool = True,
             overwrite: bool = False) -> dict:
    result = train_and_compare(out, seed=seed, num_iters=num_iters, progress=progress, overwrite=overwrite)
    trainer, test = result.trainer, result.test
    print(f"\n{'method':38s} {'AUC':>7s} {'AP':>7s} {'PR-AUC':>7s} {'AUC_A':>7s} {'FAR':>7s}")
    for name, m in ((f"ADPLG-VAD demo-cpu-small (step {trainer.step})", result.ours),
                    ("per-snippet logistic regression", result.baseline)):
        print(f"{name:38s} {m['auc']:7.4f} {m['ap']:7.4f} {m['pr_auc']:7.4f} {m['auc_abnormal']:7.4f} {m['far']:7.4f}")

    scores = predict_snippet_scores(trainer.scoring_net, test, trainer.device)
    plot = plot_test_examples(trainer.run_dir / "scores.png", test, scores,
                              title=f"ADPLG-VAD demo-cpu-small on synthetic UCF-format test videos "
                                    f"(frame AUC {result.ours['auc']:.3f})")
    print(f"score plot:     {plot}")
    summary = {"adplg": result.ours, "logistic_regression": result.baseline, "run_dir": str(trainer.run_dir),
               "plot": str(plot)}
    atomic_write_text(trainer.run_dir / "demo_results.json", json.dumps(summary, indent=2))
    return summary
