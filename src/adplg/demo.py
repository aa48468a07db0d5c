"""``adplg demo``: synthetic UCF-format data -> the CPU-sized preset -> metrics against a baseline -> a score plot.

Everything runs offline on a CPU in a few minutes: the data are written in the real on-disk formats (official list
files, per-crop ``.npy``, ``UCF_Annotation.txt``) from real UCF-Crime video lengths and anomaly intervals. The lists
name their files relative to the data folder, so the demo's folder can be moved.
"""

from __future__ import annotations

import inspect
import json
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adplg.baselines import MIL_STEPS, logistic_regression_baseline, mil_ranking_baseline
from adplg.config import Config, build_config
from adplg.data.datasets import TestSet, TrainSet, build_test_set, build_train_set, data_manifest
from adplg.data.synthetic import (
    SYNTHETIC_DATA_SETTINGS,
    TEST_NORMAL_FOLDER,
    generate_synthetic_ucf,
    synthetic_like_for,
)
from adplg.errors import AdplgError
from adplg.evaluation.evaluate import predict_snippet_scores, score_metrics
from adplg.evaluation.plots import plot_test_examples
from adplg.io import atomic_write_text, check_output_owner, mark_output_dir
from adplg.training.engine import Trainer, create_run_dir

# The CPU-sized model is too small to gain from a second thread, and on a busy 2-core machine each step of two
# threads waits for the slower one (measured 8x to 20x slower per step than one thread); one thread also makes the
# demo's numbers the same on machines with any number of cores.
DEMO_THREADS = 1
DEMO_RESULTS = "demo_results.json"  # in the demo's --out folder, beside the score plot
DEMO_PLOT = "scores.png"
METRIC_COLUMNS = (("AUC", "auc"), ("AP", "ap"), ("PR-AUC", "pr_auc"), ("AUC_A", "auc_abnormal"), ("FAR", "far"))
# What each column means, and the range measured over seeds 0-2 of this demo (last step; the baseline's in brackets).
# {chance}: the share of abnormal frames of the run's own test set; {far_threshold}: eval.far_threshold.
METRIC_MEANINGS = {
    "auc": "frame ROC AUC over every test frame: 0.5 is chance, 1 perfect; here 0.72-0.91 (baseline 0.69-0.76)",
    "ap": "average precision of the abnormal frames (sklearn's step-wise sum): chance is the share of abnormal "
          "frames, {chance:.2f} here; 0.30-0.71 (baseline 0.20-0.31)",
    "pr_auc": "the same precision-recall curve integrated by the trapezoid rule, what the official code calls \"AP\" "
              "(XD-Violence's metric); within 0.002 of AP here",
    "auc_abnormal": "AUC over the frames of the abnormal videos only: is the anomaly found inside its video; "
                    "0.72-0.89 (baseline 0.65-0.82)",
    "far": "false-alarm rate, the share of the normal videos' frames scored >= {far_threshold}: lower is better; "
           "0.09-0.14 (baseline 0.40-0.53)",
}
# what the demo (re)writes in --out; its run directories are new each time
DEMO_OUTPUT_NAMES = ("data", DEMO_RESULTS, DEMO_PLOT)


def baseline_metrics(cfg: Config, train: TrainSet, test: TestSet) -> dict[str, float]:
    """Per-snippet logistic regression on the same pooled training crops (video labels only), scored like ours."""
    scores = logistic_regression_baseline(list(train.features.numpy()), train.labels.numpy(),
                                          [test.crops(v).mean(axis=0) for v in range(len(test.videos))],
                                          num_segments=None, seed=cfg.train.seed)
    return score_metrics(test, scores, cfg.eval.far_threshold)


def mil_metrics(cfg: Config, train: TrainSet, test: TestSet, seed: int | None = None,
                steps: int = MIL_STEPS) -> dict[str, float]:
    """Deep MIL ranking (Sultani et al.) on the same pooled training crops, each test video's crops averaged;
    ``seed`` (default ``train.seed``) seeds its initialisation and batches; ``steps`` its training steps."""
    scores = mil_ranking_baseline(train.features.numpy(), train.labels.numpy(),
                                  [test.crops(v).mean(axis=0) for v in range(len(test.videos))],
                                  steps=steps, seed=cfg.train.seed if seed is None else seed)
    return score_metrics(test, scores, cfg.eval.far_threshold)


@dataclass(kw_only=True)
class Comparison:
    """The demo's outcome: ADPLG-VAD's and the baselines' test metrics, the trainer and the test set."""

    ours: dict  # the last evaluation's test metrics (no selection on the test set)
    baseline: dict
    trainer: Trainer
    test: TestSet
    mil: dict | None = None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None or 0: torch's default), restored afterwards."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_and_compare(out: Path, seed: int = 0, num_iters: int | None = None, progress: bool = False,
                      overrides: Sequence[str] = (), preset: str = "demo-cpu-small", data: dict | None = None,
                      mil: bool = False, overwrite: bool = False, reuse_data: bool = False) -> Comparison:
    """Generate the synthetic set for ``seed``, train ``preset`` on it, evaluate it and the logistic baseline (and,
    with ``mil``, the MIL ranking baseline). ``data``: options of :func:`generate_synthetic_ucf` (``crops``,
    ``feature_dim``, video counts, ``like``: the on-disk layout, by default the one of the preset's data format,
    see :func:`synthetic_like_for`); the config's feature size, crop counts, list formats and file names follow
    them. ``num_iters`` shortens the schedule: a third of the steps at most for the warm-up, the weight average
    (``train.average_from``) from the end of the warm-up at the latest. ``reuse_data``: train on the set an earlier
    call wrote into ``out/data`` with the same ``seed`` and ``data`` (e.g. a second model on the same data) instead of
    writing it again. An ``out`` holding a ``data`` folder an earlier demo did not write, or another command's
    folder, is refused before any compute (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
    out = check_output_owner(out, "demo", DEMO_OUTPUT_NAMES, what="demo output folder (out)", overwrite=overwrite)
    generator = inspect.signature(generate_synthetic_ucf).parameters
    data = {"feature_dim": generator["feature_dim"].default, "crops": generator["crops"].default, **(data or {})}
    chosen = build_config(preset, overrides=list(overrides))  # the preset as asked, before the synthetic set's data
    data["like"] = data.get("like") or synthetic_like_for(chosen.data)
    options = [f"data.list_dir={out / 'data'}", f"train.seed={seed}", f"train.progress={progress}",
               f"output_dir={out}", f"data.feature_dim={data['feature_dim']}", f"data.train_crops={data['crops']}",
               f"data.test_crops={data['crops']}"]
    options += [f"data.{key}={'null' if value is None else value}"
                for key, value in SYNTHETIC_DATA_SETTINGS[data["like"]].items()]
    schedule = []
    if num_iters is not None:  # a short run keeps two thirds of its steps for branch 2 (warm_up < num_iters)
        warm_up = min(chosen.train.warm_up, num_iters // 3)
        schedule = [f"train.num_iters={num_iters}", f"train.warm_up={warm_up}"]
        if chosen.train.average_from:
            schedule.append(f"train.average_from={min(chosen.train.average_from, warm_up)}")
    cfg = build_config(preset, overrides=[*options, *overrides, *schedule])  # invalid settings stop before any work
    mark_output_dir(out, "demo")
    if reuse_data:
        check_synthetic_set(out / "data", seed, data)
    else:
        generate_synthetic_ucf(out / "data", seed=seed, relative_paths=True, **data)
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


def check_synthetic_set(folder: Path, seed: int, data: dict) -> None:
    """Refuse to reuse the synthetic set in ``folder`` unless its ``synthetic.json`` records ``seed`` and the
    generator options ``data``."""
    meta_file = folder / "synthetic.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise AdplgError(f"reuse_data: expected a synthetic set in {folder} (its synthetic.json), found none") from None
    wanted = {"seed": seed, **data}
    differ = {key: (value, meta.get(key)) for key, value in wanted.items() if meta.get(key) != value}
    if differ:
        raise AdplgError(f"reuse_data: the synthetic set in {folder} was written with other options: "
                         + ", ".join(f"{key} expected {want!r}, got {got!r}" for key, (want, got) in differ.items()))


def metrics_table(rows: dict[str, dict]) -> list[str]:
    """The lines of the results table: one row per method, one column per metric of :data:`METRIC_COLUMNS`."""
    width = max(len(name) for name in rows)
    lines = [f"{'method':{width}s} " + " ".join(f"{label:>7s}" for label, _ in METRIC_COLUMNS)]
    for name, m in rows.items():
        lines.append(f"{name:{width}s} " + " ".join(f"{m[key]:7.4f}" for _, key in METRIC_COLUMNS))
    return lines


def metric_explanations(cfg: Config, test: TestSet) -> list[str]:
    """One line per metric of the table: what it measures, and the range to expect on the synthetic data."""
    values = {"chance": float(np.mean(test.gt.labels)), "far_threshold": cfg.eval.far_threshold}
    lines = ["what the columns mean (frame level, on the synthetic test videos; higher is better except FAR):"]
    lines += [f"  {label:7s} {METRIC_MEANINGS[key].format(**values)}" for label, key in METRIC_COLUMNS]
    return lines


def next_commands(out: Path, run_dir: Path, test: TestSet) -> list[str]:
    """The commands to try next on this demo's own files: test, calibrate, score, report."""
    data = out / "data"
    normal = data / "test" / TEST_NORMAL_FOLDER
    abnormal_class = sorted({test.videos[v].crops[0].path.parent.name for v in range(len(test.videos))
                             if test.video_labels[v] == 1})[0]
    run, annotations, scores = (shlex.quote(str(p)) for p in (run_dir, data / "UCF_Annotation.txt", out / "scores"))
    return [
        "next, on this demo's files (README: \"From a video to alerts\"):",
        f"  adplg test --model_file {run}          # the metrics again, written into the run (tests/last)",
        f"  adplg calibrate {shlex.quote(str(normal))}/*[02468]_x264.npy --checkpoint {run} --target-far 0.05 "
        f"--hysteresis 0.05 --min-duration 2 --merge-gap 3 --fps 30     # alert thresholds from half the normal "
        f"videos",
        f"  adplg score {shlex.quote(str(data / 'test' / abnormal_class))} --checkpoint {run} --fps 30 "
        f"--annotations {annotations} --out {scores}     # per-frame scores, alerts and plots",
        f"  adplg report {scores} --annotations {annotations} --no-thumbnails --out "
        f"{shlex.quote(str(out / 'report'))}     # one HTML page of them",
    ]


def run_demo(out: Path, num_iters: int | None = None, seed: int = 0, progress: bool = True,
             threads: int | None = DEMO_THREADS, overwrite: bool = False) -> dict:
    """``adplg demo``: train and compare (:func:`train_and_compare`) with ``threads`` torch threads, print the
    table, what its metrics mean and the next commands, and write ``<out>/scores.png`` and
    ``<out>/demo_results.json``; returns the results. ``overwrite``: see :func:`train_and_compare`."""
    out = Path(out)
    with torch_threads(threads):
        result = train_and_compare(out, seed=seed, num_iters=num_iters, progress=progress, overwrite=overwrite)
        trainer, test = result.trainer, result.test
        scores = predict_snippet_scores(trainer.scoring_net, test, trainer.device)
    print()
    print("\n".join(metrics_table({f"ADPLG-VAD demo-cpu-small (step {trainer.step})": result.ours,
                                   "per-snippet logistic regression": result.baseline})))
    print("\n".join(metric_explanations(trainer.cfg, test)))
    plot = plot_test_examples(out / DEMO_PLOT, test, scores,
                              title=f"ADPLG-VAD demo-cpu-small on synthetic UCF-format test videos "
                                    f"(frame AUC {result.ours['auc']:.3f})")
    summary = {"adplg": result.ours, "logistic_regression": result.baseline, "run_dir": str(trainer.run_dir),
               "data": str(out / "data"), "plot": str(plot), "threads": threads}
    results = out / DEMO_RESULTS
    atomic_write_text(results, json.dumps(summary, indent=2))
    print(f"\nscore plot:     {plot}\nresults:        {results}\nrun directory:  {trainer.run_dir}\n")
    print("\n".join(next_commands(out, trainer.run_dir, test)))
    return summary
