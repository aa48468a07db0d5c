"""adplg: ADPLG-VAD (Yang et al., Pattern Recognition 2026) for weakly supervised video anomaly detection.

The library API (every ``adplg`` command is a thin layer over it)::

    import adplg

    run = adplg.train("demo-cpu-small", overrides=["data.list_dir=my_data"])   # -> TrainResult (run_dir, metrics)
    scorer = adplg.load(run.checkpoint)                  # a Scorer: our checkpoint, run directory or authors' .pkl
    timelines = scorer.score("features/")                # or videos: scorer.score("cam.mp4", weights="rgb_imagenet.pt")
    scorer.save(timelines, "scores/")                    # per-frame CSV/JSON/PNG, alert segments, summary.json
    adplg.calibrate(scorer, "normal-features/", target_far=0.01)   # alert rules saved beside the checkpoint
    adplg.extract("videos/", "features/", backbone="i3d", weights="rgb_imagenet.pt")
    adplg.test(run.checkpoint)                           # frame AUC/AP on the config's test set

load(checkpoint, ...) -> Scorer        Scorer.score / score_array / save / calibrate / extract, Scorer.rules
train(config, overrides=...)           -> TrainResult(run_dir, config, summary, checkpoint, metrics)
test(model_files, ...)                 -> TestResult(metrics, snippet_scores, out_dir, config)
calibrate(scorer, normal_inputs, target_far, ...) -> AlertRules
extract(videos, out_dir, backbone=, weights=, ...) -> ExtractReport
watch(source, checkpoint, weights=, ...) -> WatchReport   (live camera / stream / file -> alert events; adplg watch)
build_config(preset, config_file, overrides) -> Config    (``adplg config`` lists every key)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from adplg._version import __version__

# The API is imported on first use (PEP 562), so ``import adplg.config`` or ``adplg --help`` does not import torch.
_API = {"load": "adplg.api", "Scorer": "adplg.api", "Timeline": "adplg.api", "AlertRules": "adplg.api",
        "calibrate": "adplg.api", "extract": "adplg.api", "train": "adplg.api", "TrainResult": "adplg.api",
        "test": "adplg.api", "TestResult": "adplg.api", "watch": "adplg.api", "WatchReport": "adplg.api",
        "build_config": "adplg.config", "Config": "adplg.config"}

__all__ = ["load", "Scorer", "Timeline", "AlertRules", "calibrate", "extract", "train", "TrainResult", "test",
           "TestResult", "watch", "WatchReport", "build_config", "Config", "__version__"]

if TYPE_CHECKING:
    from adplg.api import (
        AlertRules,
        Scorer,
        TestResult,
        Timeline,
        TrainResult,
        WatchReport,
        calibrate,
        extract,
        load,
        test,
        train,
        watch,
    )
    from adplg.config import Config, build_config


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adplg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
