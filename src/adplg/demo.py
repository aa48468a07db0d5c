"""``adplg demo``: synthetic UCF-format data -> the CPU-sized preset -> metrics against a baseline -> a score plot.

Everything runs offline on a CPU in a few minutes: the data are written in the real on-disk formats (official list
files, per-crop ``.npy``, ``UCF_Annotation.txt``) from real UCF-Crime video lengths and anomaly intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adplg.baselines import logistic_regression_baseline
from adplg.config import Config, build_config
from adplg.data.datasets import build_test_set, build_train_set, data_manifest
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.evaluation.evaluate import frame_scores
from adplg.evaluation.metrics import frame_metrics
from adplg.evaluation.plots import plot_score_curves
from adplg.training.engine import Trainer, create_run_dir


def demo_config(data_root: Path, run_overrides: list[str] = ()) -> Config:
    return build_config("demo-cpu-small", overrides=[f"data.list_dir={data_root}", *run_overrides])


def baseline_metrics(cfg: Config, train, test) -> dict[str, float]:
    """Per-snippet logistic regression on the same data (video labels only), scored like our model."""
    train_feats = [np.asarray(f) for f in train.features.numpy()]
    scores = logistic_regression_baseline(train_feats, train.labels.numpy(), [test.crops(v).mean(axis=0)
                                                                              for v in range(len(test.videos))],
                                          num_segments=None, seed=cfg.train.seed)
    return frame_metrics(test.gt.labels, frame_scores(test, scores), offsets=test.gt.offsets,
                         video_labels=test.video_labels, far_threshold=cfg.eval.far_threshold)


def run_demo(out: Path, num_iters: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    out = Path(out)
    dataset = generate_synthetic_ucf(out / "data", seed=seed)
    overrides = [f"train.seed={seed}", f"train.progress={progress}", f"output_dir={out}"]
    if num_iters is not None:
        overrides.append(f"train.num_iters={num_iters}")
    cfg = demo_config(dataset.root, overrides)
    train = build_train_set(cfg, progress=False)
    test = build_test_set(cfg, progress=False)
    run_dir = create_run_dir(cfg)  # <out>/demo-cpu-small-seed<seed>-<time>
    manifest = data_manifest(cfg, train, test)
    (run_dir / "data_manifest.json").write_text(json.dumps(manifest, indent=2))
    print(f"synthetic data: {dataset.root} ({len(train.items)} train crops, {len(test.videos)} test videos)")
    print(f"run directory:  {run_dir}")
    trainer = Trainer(cfg, train, test, run_dir, manifest=manifest)
    summary = trainer.fit()
    ours = summary["last"]["test"]
    base = baseline_metrics(cfg, train, test)
    print(f"\n{'method':36s} {'AUC':>7s} {'AP':>7s} {'PR-AUC':>7s} {'AUC_A':>7s} {'FAR':>7s}")
    for name, m in ((f"ADPLG-VAD demo-cpu-small (step {summary['last']['step']})", ours),
                    ("per-snippet logistic regression", base)):
        print(f"{name:36s} {m['auc']:7.4f} {m['ap']:7.4f} {m['pr_auc']:7.4f} {m['auc_abnormal']:7.4f} {m['far']:7.4f}")

    from adplg.evaluation.evaluate import predict_snippet_scores

    scores = predict_snippet_scores(trainer.net_s, test, trainer.device)
    shown = [v for v in range(len(test.videos)) if test.video_labels[v] == 1][:4] + \
            [v for v in range(len(test.videos)) if test.video_labels[v] == 0][:2]
    gt = test.gt
    plot = plot_score_curves(run_dir / "scores.png", [test.videos[v].name for v in shown],
                             [test.layout.expand(scores[v]) for v in shown],
                             [gt.labels[gt.offsets[v]:gt.offsets[v + 1]] for v in shown],
                             title=f"ADPLG-VAD demo-cpu-small, synthetic UCF-format test videos (AUC {ours['auc']:.3f})")
    print(f"score plot:     {plot}")
    result = {"adplg": ours, "logistic_regression": base, "run_dir": str(run_dir), "plot": str(plot)}
    (run_dir / "demo_results.json").write_text(json.dumps(result, indent=2))
    return result
