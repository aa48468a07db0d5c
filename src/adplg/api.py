"""The Python front door: every ``adplg`` command is a thin layer over these calls.

Train, then score (a notebook user's few lines)::

    import adplg

    run = adplg.train("demo-cpu-small", overrides=["data.list_dir=my_data", "train.num_iters=300"])
    print(run.metrics["auc"], run.checkpoint)

    scorer = adplg.load(run.checkpoint)                 # our checkpoint, a run directory, or the authors' .pkl
    timelines = scorer.score("features/cam1")           # .npy features, folders of them, or videos (weights=...)
    for t in timelines:
        alerted, segments = t.alerts(scorer.rules)      # hysteresis, merge gap, minimum duration
    scorer.save(timelines, "scores/cam1")               # CSV / JSON / PNG per video and summary.json

    rules = adplg.calibrate(scorer, "features/cam1-normal", target_far=0.01)   # saved beside the checkpoint
    rules = adplg.calibrate(scorer, "features/cam1-normal", 0.01, verdicts="verdicts.json")  # + reviewed footage
    rules, source = scorer.rules_with(alerts_file="cam1.alerts.yaml", on_threshold=0.3)  # as `score --threshold`
    report = adplg.extract("videos/", "features/", backbone="i3d", weights="rgb_imagenet.pt")
    result = adplg.test("runs/ucf-i3d-seed42-.../checkpoints/last.safetensors", overrides=["data.list_dir=list"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adplg.alert_rules import AlertRules
from adplg.evaluation.run import TestResult, test_checkpoints
from adplg.inference.inputs import Inputs
from adplg.inference.scorer import Scorer, load
from adplg.inference.timeline import Timeline
from adplg.inference.verdicts import Verdicts
from adplg.live.watch import WatchReport, watch
from adplg.training.run import TrainResult, train

__all__ = ["load", "Scorer", "Timeline", "AlertRules", "calibrate", "extract", "train", "TrainResult", "test",
           "TestResult", "watch", "WatchReport"]


def calibrate(scorer: Scorer | str | Path, normal_inputs: Inputs, target_far: float, *, hysteresis: float = 0.0,
              min_duration_s: float = 0.0, merge_gap_s: float = 0.0, save_to: str | Path | bool = True,
              verdicts: str | Path | Verdicts | None = None, fps: float | None = None,
              **score_options) -> AlertRules:
    """Alert rules for a model from normal footage it was not trained on: the lowest threshold whose false-alarm
    rate (share of normal frames inside an alert) is at most ``target_far``. ``scorer``: a :class:`Scorer` or a
    checkpoint path. ``verdicts``: a ``verdicts.json`` from an ``adplg report`` (or the read verdicts), whose false
    alerts' footage counts as extra normal footage. ``fps``: the frame rate of feature files without an extraction
    record, as for :meth:`Scorer.score`. Saved beside the checkpoint by default (``save_to``), where
    scoring picks them up; see :meth:`Scorer.calibrate` for the options."""
    scorer = scorer if isinstance(scorer, Scorer) else load(scorer)
    return scorer.calibrate(normal_inputs, target_far, hysteresis=hysteresis, min_duration_s=min_duration_s,
                            merge_gap_s=merge_gap_s, save_to=save_to, verdicts=verdicts, fps=fps,
                            **score_options)


def extract(videos: Inputs, out_dir: str | Path, *, backbone: str, weights: str | Path, crops: int | None = None,
            naming: str = "ucf", device: str = "auto", shard: tuple[int, int] = (0, 1), batch_snippets: int = 8,
            clip_frame: str = "middle", progress: bool = True):
    """I3D or CLIP snippet features of ``videos`` (files, folders, list files) in the published layouts: one
    ``[T, D]`` float32 ``.npy`` per crop, ``meta/<video>.json`` records and ``manifest.json`` in ``out_dir``.
    Re-runs skip finished videos. Returns an :class:`~adplg.features.extract.ExtractReport`."""
    from adplg.conventions import DEFAULT_CROPS
    from adplg.features.extract import extract_many
    from adplg.features.extractors import build_extractor

    if backbone not in DEFAULT_CROPS:
        from adplg.errors import AdplgError

        raise AdplgError(f"backbone: expected one of {', '.join(DEFAULT_CROPS)}, got {backbone!r}")
    extractor = build_extractor(backbone, Path(weights), DEFAULT_CROPS[backbone] if crops is None else crops,
                                device=device, batch_snippets=batch_snippets, clip_frame=clip_frame)
    paths = [videos] if isinstance(videos, (str, Path)) else list(videos)
    return extract_many([Path(p) for p in paths], extractor, Path(out_dir), naming=naming, shard=shard,
                        progress=progress)


def test(model_files: str | Path | Sequence[str | Path], *, preset: str | None = None,
         config_file: str | Path | None = None, overrides: Sequence[str] = (), out_dir: str | Path | None = None,
         plot: bool = True, overwrite: bool = False) -> TestResult:
    """Frame AUC / AP of checkpoint(s) on the config's test set; results, scores and a plot written inside the run
    (see :func:`adplg.evaluation.run.test_checkpoints`, also for ``overwrite``)."""
    files = [model_files] if isinstance(model_files, (str, Path)) else list(model_files)
    return test_checkpoints(files, preset=preset, config_file=config_file, overrides=overrides, out_dir=out_dir,
                            plot=plot, overwrite=overwrite)


setattr(test, "__test__", False)  # not a pytest test, despite its name (setattr: mypy knows no function attributes)
