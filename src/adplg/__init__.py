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

__version__ = "0.1.0"

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

__all__ = ["load", "Scorer", "Timeline", "AlertRules", "calibrate", "extract", "train", "TrainResult", "test",
           "TestResult", "watch", "WatchReport", "build_config", "Config", "__version__"]
