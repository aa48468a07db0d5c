"""The inference pipeline as a library: a loaded model that scores feature files, videos or arrays, turns scores into
alerts, saves timelines, and calibrates its alert rules. ``adplg score`` and ``adplg calibrate`` are thin layers over
this module; a notebook, a live-camera service or a cluster job use the same calls::

    scorer = adplg.load("runs/ucf-i3d-seed42-.../checkpoints/last.safetensors")
    timelines = scorer.score("features/cam1")                      # extracted features (or a video, with weights=)
    scorer.save(timelines, "scores/cam1")                          # CSV / JSON / PNG per video + summary.json
    rules = scorer.calibrate("features/cam1-normal", target_far=0.01)
    rules = scorer.calibrate("features/cam1-normal", 0.01, verdicts="verdicts.json")   # + reviewed false alerts
    rules, source = scorer.rules_with(on_threshold=0.3)            # the saved rules with one value changed
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from adplg.alert_rules import AlertRules
from adplg.config import Config
from adplg.data.datasets import snippet_layout
from adplg.data.extraction import read_video_record
from adplg.data.features import FeatureStore
from adplg.data.gt import SnippetLayout
from adplg.errors import AdplgError
from adplg.inference.alerts import resolve_rules, rules_path_for
from adplg.inference.calibration import calibrate, check_calibration
from adplg.inference.inputs import Inputs, PathLike, feature_items, record_clock, split_inputs
from adplg.inference.timeline import ASSUMED_FPS, Timeline, annotated_spans, build_timeline, check_fps
from adplg.inference.verdicts import Verdicts, false_alert_timelines, read_verdicts, verdict_record
from adplg.io import atomic_write_text, check_output_owner, file_sha256, mark_output_dir
from adplg.models.apply import DEFAULT_BATCH_SNIPPETS, video_snippet_scores

# what `adplg score` writes into its folder (a folder without its marker holding one of them is never written into)
SCORE_OUTPUT_NAMES = ("*.json", "*.csv", "*.png", "features")

log = logging.getLogger(__name__)


def score_features(net_s: torch.nn.Module, store: FeatureStore, device: torch.device | str = "cpu",
                   precision: str = "fp32", batch_snippets: int = DEFAULT_BATCH_SNIPPETS,
                   smooth_window: int = 0, smooth_mode: str = "centred") -> dict[str, np.ndarray]:
    """Per video of ``store``, the crop-averaged snippet scores ``[T]`` of
    :func:`~adplg.models.apply.video_snippet_scores` (``net_s`` in eval mode), smoothed over ``smooth_window``
    snippets as evaluation does (``eval.smooth_window``, 0 = off, and ``eval.smooth_mode``). A video longer than
    the model's ``max_len`` is scored in overlapping windows."""
    by_video: dict[str, list[int]] = {}
    for i, item in enumerate(store.items):
        by_video.setdefault(item.video, []).append(i)
    max_len = getattr(net_s, "max_len", None)
    out = {}
    for video, idxs in by_video.items():
        crops = np.stack([store[i] for i in idxs])  # [C, T, D]
        if max_len and crops.shape[1] > max_len:
            log.info("%s: %d snippets, more than the model's max_len %d: scored in windows of %d snippets "
                     "overlapping by %d, averaged", video, crops.shape[1], max_len, max_len, max_len // 4)
        out[video] = video_snippet_scores(net_s, crops, batch_snippets=batch_snippets, smooth_window=smooth_window,
                                          device=device, precision=precision, smooth_mode=smooth_mode)
    return out


def score_inputs(net_s: torch.nn.Module, inputs: list[Path], feature_dim: int, naming: str = "ucf",
                 fps: float | None = None, device: torch.device | str = "cpu", precision: str = "fp32",
                 batch_snippets: int = DEFAULT_BATCH_SNIPPETS, expected_crops: int | None = None,
                 progress: bool = False, layout: SnippetLayout | None = None, smooth_window: int = 0,
                 allow_incomplete: bool = False, smooth_mode: str = "centred") -> list[Timeline]:
    """Validate and score every video of the feature ``inputs``; one :class:`Timeline` per video, its frames laid
    out by ``layout`` (the config's ``data.layout``; :func:`~adplg.inference.timeline.build_timeline`). A crop count
    other than ``expected_crops`` (the checkpoint's test crops) is scored but warned about. ``fps``: None or a
    finite rate > 0, used where no extraction record gives one. Half-extracted videos of an ``adplg extract`` folder
    are refused unless ``allow_incomplete`` (see :mod:`adplg.inference.inputs`)."""
    check_fps(fps)
    layout = layout or SnippetLayout()
    items = feature_items(inputs, naming, allow_incomplete)
    store = FeatureStore.load(items, feature_dim=feature_dim, mmap=True, progress=progress,
                              context="features to score")  # memory-mapped: one video in memory at a time
    scores = score_features(net_s, store, device, precision, batch_snippets, smooth_window, smooth_mode)
    timelines, assumed = [], []
    for video, snippet_scores in scores.items():
        files = [str(it.path) for it in items if it.video == video]
        crops = sum(it.video == video for it in items)
        if expected_crops is not None and crops != expected_crops:
            log.warning("%s: %d crop(s) found, but the model was evaluated on %d; scores average the %d found",
                        video, crops, expected_crops, crops)
        record = read_video_record(Path(files[0]).parent, video)
        clock = record_clock(record, len(snippet_scores), f"extraction record of {video}")
        if clock.fps is not None:
            rate, source = clock.fps, "extraction record"
        elif fps is not None:
            rate, source = float(fps), "--fps"
        else:
            rate, source = ASSUMED_FPS, f"assumed {ASSUMED_FPS:g} fps (no extraction record and no fps given)"
            assumed.append(video)
        video_frames = None
        if layout.kind == "spread":
            video_frames = (record or {}).get("frames_decoded") or (record or {}).get("container_frames")
            if not video_frames:
                raise AdplgError(f"{video}: the config's 'spread' snippet layout needs the video's frame count, "
                                 f"expected an extraction record meta/{video}.json with frames_decoded, got none")
        timelines.append(build_timeline(video, snippet_scores, layout=layout, fps=rate, fps_source=source,
                                        video_frames=video_frames, snippet_start_s=clock.snippet_start_s,
                                        snippet_end_s=clock.snippet_end_s, frame_start_s=clock.frame_start_s,
                                        clock_snippet_frames=(record or {}).get("snippet_frames"),
                                        features=list(dict.fromkeys(files))))
    if assumed:  # one warning per call, however many videos
        shown = ", ".join(assumed[:3]) + (f" and {len(assumed) - 3} more" if len(assumed) > 3 else "")
        log.warning("frame rate unknown for %d video(s) without an extraction record (%s): assuming %g fps; pass "
                    "fps= for their real rate", len(assumed), shown, ASSUMED_FPS, extra={"parameter": "fps"})
    return timelines


class Scorer:
    """A loaded scoring model (one checkpoint, or an ensemble of several) with its config and alert rules.

    Attributes: ``config`` (the :class:`~adplg.config.Config` the model was built from), ``model`` (the snippet
    branch, ``features [B, T, D] -> scores [B, T]`` in ``[0, 1]``), ``device``, ``checkpoints`` (the files), and
    ``rules`` / ``rules_source``: the alert rules saved beside the (first) checkpoint by :meth:`calibrate`, else a
    fixed 0.5 threshold.
    """

    def __init__(self, config: Config, model: torch.nn.Module, checkpoints: Sequence[PathLike],
                 device: torch.device | str = "cpu"):
        from adplg.runtime import resolve_device

        self.config = config
        self.device = device if isinstance(device, torch.device) else resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.checkpoints = [Path(c) for c in checkpoints]
        beside = rules_path_for(self.checkpoints[0]) if self.checkpoints else None
        if beside is not None and beside.is_file():
            self.rules, self.rules_source = AlertRules.load(beside), str(beside)
        else:
            self.rules, self.rules_source = AlertRules(), "default (threshold 0.5, no calibration)"

    def __repr__(self) -> str:
        c = self.config
        return (f"Scorer({', '.join(map(str, self.checkpoints))}; {c.data.feature_dim}-d features, "
                f"{c.data.test_crops or 'any'} crop(s), layout {c.data.layout.kind}, device {self.device})")

    # ------------------------------------------------------------------------------------------------ scoring
    def score_array(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Snippet scores ``[T]`` of one video's features ``[T, D]`` or ``[crops, T, D]`` (crops averaged), as
        :func:`~adplg.models.apply.video_snippet_scores` gives them under this model's evaluation settings
        (``eval.batch_snippets``, ``eval.precision``, ``eval.smooth_window``, ``eval.smooth_mode``). A video longer
        than the model's ``max_len`` snippets is scored in overlapping windows of ``max_len`` (overlap
        ``max_len // 4``), the overlapping scores averaged."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if x.ndim == 2:
            x = x[None]
        dim = self.config.data.feature_dim
        if x.ndim != 3 or x.shape[-1] != dim or x.shape[1] < 1:
            raise AdplgError(f"features: expected [T, {dim}] or [crops, T, {dim}], got {list(x.shape)}")
        e = self.config.eval
        return video_snippet_scores(self.model, x, batch_snippets=e.batch_snippets, smooth_window=e.smooth_window,
                                    smooth_mode=e.smooth_mode, device=self.device, precision=e.precision)

    def score(self, inputs: Inputs, *, fps: float | None = None, naming: str | None = None,
              weights: PathLike | None = None, backbone: str | None = None, features_dir: PathLike | None = None,
              progress: bool = False, allow_incomplete: bool = False) -> list[Timeline]:
        """Score feature files, folders of them, or videos; one :class:`~adplg.inference.timeline.Timeline` per video.

        ``inputs``: ``.npy`` files (``[T, D]`` per crop, or ``[T, crops, D]``), folders of them (searched
        recursively), or video files / folders of videos. Videos need the backbone ``weights`` (``backbone`` defaults
        to the one whose feature size the model takes); their features are extracted with the model's test crops
        into ``features_dir`` (default: a temporary folder, deleted afterwards). ``fps`` is used for feature files
        without an extraction record (a finite rate > 0); ``naming`` (ucf/xd/sht) defaults to the extraction
        manifest's, else ucf. Half-extracted videos of an ``adplg extract`` folder (crop files without their
        ``meta/<video>.json`` record, or fewer crops than it names) are refused unless ``allow_incomplete``."""
        check_fps(fps)
        videos, features, naming = split_inputs(inputs, naming)
        if not videos:
            return self.score_feature_files(features, naming, fps, progress, allow_incomplete)
        with tempfile.TemporaryDirectory(prefix="adplg-features-") as tmp:
            folder = Path(features_dir) if features_dir is not None else Path(tmp)
            self.extract(videos, folder, weights=weights, backbone=backbone, naming=naming, progress=progress)
            return self.score_feature_files([*features, folder], naming, fps, progress, allow_incomplete)

    def score_feature_files(self, features: list[Path], naming: str, fps: float | None,
                            progress: bool, allow_incomplete: bool = False) -> list[Timeline]:
        """One :class:`Timeline` per video of the ``.npy`` feature ``features`` (files or folders; no videos), with
        this model's crops, layout, precision and smoothing (what :meth:`score` does once videos are extracted)."""
        c = self.config
        return score_inputs(self.model, features, c.data.feature_dim, naming=naming, fps=fps, device=self.device,
                            precision=c.eval.precision, batch_snippets=c.eval.batch_snippets,
                            expected_crops=c.data.test_crops, progress=progress, layout=snippet_layout(c.data),
                            smooth_window=c.eval.smooth_window, allow_incomplete=allow_incomplete,
                            smooth_mode=c.eval.smooth_mode)

    def video_extractor(self, weights: PathLike | None, backbone: str | None = None, device=None,
                        video: PathLike = "a video input"):
        """The feature extractor for this model's video inputs (its backbone's feature size, its test crops), on
        ``device`` (default: the model's). ``video`` names the input in the error when ``weights`` is missing."""
        from adplg.features.extractors import extractor_for_model

        return extractor_for_model(self.config.data.feature_dim, weights, backbone=backbone,
                                   crops=self.config.data.test_crops, device=device or self.device, video=video)

    def extract(self, videos: Sequence[PathLike], out_dir: PathLike, *, weights: PathLike | None,
                backbone: str | None = None, naming: str = "ucf", progress: bool = False) -> Path:
        """Features of ``videos`` for this model (its backbone's feature size, its test crops) into ``out_dir``."""
        from adplg.features.extract import extract_many

        paths = [Path(v) for v in videos]
        extractor = self.video_extractor(weights, backbone, video=paths[0])
        report = extract_many(paths, extractor, Path(out_dir), naming=naming, progress=progress)
        if report.failed:
            raise AdplgError("feature extraction failed for " + "; ".join(f"{v}: {why}" for v, why in report.failed))
        return Path(out_dir)

    # ------------------------------------------------------------------------------------------------ outputs
    def save(self, timelines: Sequence[Timeline], out_dir: PathLike, rules: AlertRules | None = None, *,
             rules_source: str | None = None, annotations: PathLike | dict | None = None,
             annotation_format: str = "ucf", plot: bool = True, overwrite: bool = False) -> dict:
        """Per video ``<name>.csv``, ``<name>.json`` and ``<name>.png`` (annotated anomalies shaded when
        ``annotations`` is a UCF/XD annotation file or ``{video: [(start_frame, end_frame), ...]}``), and
        ``summary.json``; returns the summary. ``rules`` default to :attr:`rules`; ``rules_source`` says where
        given rules came from (recorded in the summary). ``out_dir`` must be a folder (or a new path) that is empty
        or an earlier ``adplg score`` output (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
        from adplg.data.gt import read_annotations

        out = check_output_owner(out_dir, "score", SCORE_OUTPUT_NAMES, what="scores folder (out_dir)",
                                 overwrite=overwrite)
        rules = rules or self.rules
        intervals = (read_annotations(annotations, annotation_format)
                     if isinstance(annotations, (str, Path)) else annotations)
        mark_output_dir(out, "score")
        videos = [t.save(out, rules, annotated_spans(intervals, t.name, t.fps), plot=plot) for t in timelines]
        source = rules_source or (self.rules_source if rules is self.rules else "given")
        return self.write_summary(out, videos, rules, source)

    def write_summary(self, out_dir: PathLike, videos: list[dict], rules: AlertRules, rules_source: str) -> dict:
        """``<out_dir>/summary.json``: the checkpoints, the alert rules and where they came from, and the videos'
        summaries (as :func:`~adplg.inference.timeline.write_timeline` returns them); returns it."""
        summary = {"checkpoint": [str(c) for c in self.checkpoints], "alert_rules": rules.to_dict(),
                   "alert_rules_source": rules_source, "videos": videos}
        atomic_write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=2))
        return summary

    def rules_with(self, *, alerts_file: PathLike | None = None, on_threshold: float | None = None,
                   off_threshold: float | None = None, min_duration_s: float | None = None,
                   merge_gap_s: float | None = None) -> tuple[AlertRules, str]:
        """The alert rules to use and where they came from (for :meth:`save`'s ``rules_source``): :attr:`rules`, or
        the rules file ``alerts_file``, with each value given here replacing its own (see
        :func:`adplg.inference.alerts.resolve_rules`, which ``adplg score`` and ``adplg watch`` use too)."""
        return resolve_rules(self.rules, self.rules_source, alerts_file=alerts_file, on_threshold=on_threshold,
                             off_threshold=off_threshold, min_duration_s=min_duration_s, merge_gap_s=merge_gap_s)

    def check_rules(self, rules: AlertRules) -> None:
        """Warn when ``rules`` were calibrated on another model."""
        recorded = rules.calibration.get("checkpoint_sha256")
        if recorded and self.checkpoints and recorded != self.sha256:
            log.warning("the alert rules were calibrated on another checkpoint (%s); re-run `adplg calibrate`",
                        rules.calibration.get("checkpoint"))

    @property
    def sha256(self) -> str:
        """The sha256 of the weights file, or for an ensemble the sha256 of its members' hashes in order."""
        from adplg.checkpoints.format import checkpoint_file

        hashes = [file_sha256(checkpoint_file(c)) for c in self.checkpoints]
        return hashes[0] if len(hashes) == 1 else hashlib.sha256(" ".join(hashes).encode()).hexdigest()

    # ------------------------------------------------------------------------------------------------ calibration
    def calibrate(self, normal_inputs: Inputs | Sequence[Timeline], target_far: float, *, hysteresis: float = 0.0,
                  min_duration_s: float = 0.0, merge_gap_s: float = 0.0, save_to: PathLike | None | bool = True,
                  verdicts: PathLike | Verdicts | None = None, fps: float | None = None,
                  **score_options) -> AlertRules:
        """Alert rules whose false-alarm rate on normal footage is at most ``target_far`` (see
        :func:`adplg.inference.calibration.calibrate`). ``normal_inputs``: anything :meth:`score` takes (footage the
        model was not trained on), or timelines already scored; ``fps`` (as in :meth:`score`: the rate of feature
        files without an extraction record) and ``score_options`` go to :meth:`score`. Durations, gaps and the amount
        of footage are measured on each timeline's real clock (:attr:`Timeline.clock_edges_s`) when it has one.

        ``verdicts``: reviewers' verdicts on earlier alerts (a ``verdicts.json`` downloaded from an ``adplg report``,
        or :func:`~adplg.inference.verdicts.read_verdicts`' result): the footage of every false alert is scored by
        this model and counts as extra normal footage (see :mod:`adplg.inference.verdicts`); the rules record the
        verdicts used under ``calibration["verdicts"]``.

        ``save_to``: a YAML path, ``True`` for ``<checkpoint>.alerts.yaml`` beside the (first) checkpoint (then
        :meth:`score` picks them up), ``False`` or None to keep them in memory. The result becomes :attr:`rules`."""
        from adplg.checkpoints.format import checkpoint_file

        check_calibration(target_far, hysteresis, min_duration_s, merge_gap_s)  # before the (long) scoring
        check_fps(fps)
        score_options = {**score_options, "fps": fps}
        if verdicts is not None and not isinstance(verdicts, Verdicts):
            verdicts = read_verdicts(verdicts)  # a bad file is reported before the scoring too
        if isinstance(normal_inputs, (list, tuple)) and normal_inputs and isinstance(normal_inputs[0], Timeline):
            timelines = list(normal_inputs)
        else:  # not timelines (its first item is none): inputs for score()
            timelines = self.score(cast(Inputs, normal_inputs), **score_options)
        spans = [] if verdicts is None else false_alert_timelines(
            self, verdicts, fps=score_options.get("fps"), naming=score_options.get("naming"),
            allow_incomplete=score_options.get("allow_incomplete", False))
        footage = [*timelines, *spans]
        rules = calibrate(footage, target_far, hysteresis, min_duration_s, merge_gap_s)
        rules.calibration.update({"checkpoint": [str(checkpoint_file(c)) for c in self.checkpoints],
                                  "checkpoint_sha256": self.sha256, "normal_videos": [t.name for t in footage]})
        if verdicts is not None:
            rules.calibration["verdicts"] = verdict_record(verdicts, spans)
        if save_to:
            path = rules_path_for(self.checkpoints[0]) if save_to is True else Path(save_to)
            rules.save(path)
            self.rules_source = str(path)
        else:
            self.rules_source = "calibrated in memory"
        self.rules = rules
        return rules


def load(checkpoint: PathLike | Sequence[PathLike], *more: PathLike, preset: str | None = None,
         config: PathLike | None = None, overrides: Sequence[str] = (), device: str = "auto") -> Scorer:
    """Load a :class:`Scorer` from our checkpoint (``.safetensors``, or a run directory for its last checkpoint)
    or the authors' ``*_model_s_*.pkl`` (which needs ``preset``); several checkpoints score their mean (an
    ensemble). Our checkpoints build the model they were trained with; ``preset`` / ``config`` / ``overrides``
    (``"eval.smooth_window=5"``) only set data paths and evaluation settings for them."""
    from adplg.checkpoints.load import load_scorer

    files = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    files += list(more)
    # scoring reads no list files: the data paths saved in the checkpoint go unused and unannounced
    cfg, model = load_scorer(files, preset, None if config is None else str(config), list(overrides),
                             announce_data=False)
    return Scorer(cfg, model, files, device)
