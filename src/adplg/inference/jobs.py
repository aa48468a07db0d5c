"""Scoring as per-video jobs: what ``adplg score`` runs, resumable and the same on every engine (this process, or a
Ray cluster: :mod:`adplg.engines`).

A run is three steps, like extraction (:mod:`adplg.features.extract`):

1. :func:`plan_scoring` (on the driver): the inputs are checked as :meth:`~adplg.inference.scorer.Scorer.score` checks
   them (every path exists, feature folders hold no half-extracted video, no video name twice); each video becomes a
   unit (a video file, or the crop files of one video's features) with a *score fingerprint*, the sha256 of
   everything its outputs depend on: the checkpoint's sha256, the model, layout and evaluation settings, the alert
   rules, naming, ``fps``, plotting, the video's annotated intervals, and the input (each feature file's and
   extraction record's path, size and modification time; for a video file, its path, size and modification time and
   the extraction settings fingerprint). A unit whose ``<name>.json`` holds that fingerprint and whose ``<name>.csv``
   (and ``<name>.png`` when plotting) exist is skipped. Video inputs get their features in ``<out>/features`` (its
   manifest is checked or written here).
2. the work, :func:`score_unit`, mapped by the engine over the units to do: in this process on the scorer (and
   extractor) already loaded, or in Ray workers that each load the checkpoint (:class:`ModelSpec`) and the backbone
   once. A video file is extracted first unless its features are finished
   (:func:`~adplg.features.extract.extract_video`), then scored, and its ``<name>.csv``, ``<name>.json`` (with
   ``score_fingerprint``) and ``<name>.png`` are written atomically; a failing video gives a failed record and the
   others go on.
3. :func:`finish_scoring`: ``summary.json`` from every scored video (skipped ones read back from their
   ``<name>.json``), in the plan's order, whichever engine ran and whatever order the records came in; with video
   inputs, ``<out>/features/features.list``.

The per-video outputs are those of :meth:`Scorer.save <adplg.inference.scorer.Scorer.save>`
(:func:`~adplg.inference.timeline.write_timeline`) plus the fingerprint, so a run killed part-way resumes: the re-run
skips the videos finished before the kill and writes the files an uninterrupted run would have written.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adplg.alert_rules import AlertRules
from adplg.data.extraction import is_finished, meta_path, write_feature_list
from adplg.engines import Engine, LocalEngine, worker_died
from adplg.errors import AdplgError
from adplg.features.extract import ExtractionProgress, collect_videos, plan_extraction
from adplg.features.extractors import FeatureExtractor, build_extractor
from adplg.inference.inputs import feature_items, split_inputs
from adplg.inference.scorer import SCORE_OUTPUT_NAMES, Scorer
from adplg.inference.timeline import TIMELINE_SUMMARY_KEYS, annotated_spans, check_fps, write_timeline
from adplg.io import check_output_owner, mark_output_dir, remove_stale_temporaries

__all__ = ["ModelSpec", "ScoreSettings", "ScorePlan", "ScoreReport", "plan_scoring", "score_unit", "finish_scoring",
           "score_many"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What :func:`adplg.load` takes, so that a worker in another process can load the model itself."""

    checkpoints: tuple[str, ...]
    preset: str | None = None
    config: str | None = None
    overrides: tuple[str, ...] = ()

    def load(self, device: str = "auto") -> Scorer:
        """The :class:`Scorer` of these checkpoints and settings on ``device``."""
        from adplg.inference.scorer import load

        return load(list(self.checkpoints), preset=self.preset, config=self.config, overrides=list(self.overrides),
                    device=device)


@dataclass(frozen=True, kw_only=True)
class ScoreSettings:
    """Everything the work of one unit needs besides the model (small and picklable: it travels to the workers)."""

    out_dir: str
    features_dir: str
    naming: str
    fps: float | None
    allow_incomplete: bool
    rules: AlertRules
    plot: bool
    annotations: dict | None  # {video key: [(start_frame, end_frame), ...]}
    extraction_fingerprint: str | None  # of <out>/features, when there are video inputs


@dataclass(kw_only=True)
class ScorePlan:
    """What a run will do (:func:`plan_scoring`): ``units`` (every video in output order: ``{"video": name, "kind":
    "video" | "features", "paths": [...], "score_fingerprint": ...}``), of which ``todo`` are to be scored and
    ``skipped`` (names) are scored already; ``extractor_args`` rebuild the extractor for video units."""

    settings: ScoreSettings
    units: list[dict] = field(default_factory=list)
    todo: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    extractor_args: dict | None = None
    started: float = field(default_factory=time.perf_counter)


@dataclass(kw_only=True)
class ScoreReport:
    """What one :func:`score_many` call did. ``failed`` holds ``(video or feature path, reason)``; ``summary`` is
    what ``summary.json`` holds (None when no video was scored); ``engine`` where the work ran
    (:meth:`Engine.describe <adplg.engines.Engine.describe>`)."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    summary: dict | None = None
    engine: str = ""
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed


# ------------------------------------------------------------------------------------------------------------- plan
def _file_state(path: Path) -> list:
    """``[absolute path, size, mtime_ns]``: a file rewritten since (atomic writes make a new file) changes it."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _run_state(scorer: Scorer, settings: ScoreSettings) -> dict:
    """What every video's outputs depend on besides its own input (computed once: the checkpoint is hashed here)."""
    c = scorer.config
    return {"checkpoint_sha256": scorer.sha256, "model": c.model.model_dump(mode="json"),
            "data": {"feature_dim": c.data.feature_dim, "test_crops": c.data.test_crops,
                     "layout": c.data.layout.model_dump(mode="json")},
            "eval": {"smooth_window": c.eval.smooth_window, "smooth_mode": c.eval.smooth_mode,
                     "precision": c.eval.precision},
            "rules": settings.rules.to_dict(), "naming": settings.naming, "fps": settings.fps,
            "allow_incomplete": settings.allow_incomplete, "plot": settings.plot}


def _score_fingerprint(run_state: dict, settings: ScoreSettings, name: str, inputs: dict) -> str:
    """Hex sha256 of ``run_state``, the video's annotated intervals and the state of its ``inputs``."""
    from adplg.data.gt import annotation_key

    annotated = (settings.annotations or {}).get(annotation_key(name)) if settings.annotations is not None else None
    state = {**run_state, "inputs": inputs,
             "annotated": [list(map(int, span)) for span in annotated] if annotated is not None else None}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _is_scored(out_dir: Path, name: str, fingerprint: str, plot: bool) -> bool:
    try:
        record = json.loads((out_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and record.get("score_fingerprint") == fingerprint
            and (out_dir / f"{name}.csv").is_file() and (not plot or (out_dir / f"{name}.png").is_file()))


def plan_scoring(scorer: Scorer, inputs, out_dir: Path, rules: AlertRules, *, fps: float | None = None,
                 naming: str | None = None, weights=None, backbone: str | None = None,
                 allow_incomplete: bool = False, annotations: dict | None = None, plot: bool = True,
                 extractor: FeatureExtractor | None = None, overwrite: bool = False) -> ScorePlan:
    """Step 1 (see the module docstring). Nothing is scored or extracted; ``<out>/features/manifest.json`` is
    written when there are video inputs. ``extractor`` (default: the model's, built on the CPU) supplies the
    extraction settings of video inputs. ``out_dir`` must be empty, new or an earlier ``adplg score`` output
    (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
    check_fps(fps)
    video_inputs, feature_inputs, naming = split_inputs(inputs, naming)
    out_dir = check_output_owner(out_dir, "score", SCORE_OUTPUT_NAMES, what="scores folder (out_dir)",
                                 overwrite=overwrite)
    features_dir = out_dir / "features"

    feature_units: dict[str, list[str]] = {}
    for item in feature_items(feature_inputs, naming, allow_incomplete) if feature_inputs else []:
        files = feature_units.setdefault(item.video, [])
        if str(item.path) not in files:
            files.append(str(item.path))
    videos: list[Path] = []
    fingerprint = extractor_args = None
    if video_inputs:
        extractor = extractor or scorer.video_extractor(weights, backbone, device="cpu", video=video_inputs[0])
        videos = collect_videos(video_inputs)
        mark_output_dir(out_dir, "score")
        fingerprint = plan_extraction(videos, extractor, features_dir, naming).fingerprint
        extractor_args = extractor.build_args()
    clashes = sorted(set(feature_units) & {v.stem for v in videos})
    if clashes:
        raise AdplgError(f"video name(s) {clashes} given both as feature files and as videos; expected each video "
                         "once (score them in separate runs)")

    settings = ScoreSettings(out_dir=str(out_dir.resolve()), features_dir=str(features_dir.resolve()), naming=naming,
                             fps=fps, allow_incomplete=allow_incomplete, rules=rules, plot=plot,
                             annotations=annotations, extraction_fingerprint=fingerprint)
    plan = ScorePlan(settings=settings, extractor_args=extractor_args)
    run_state = _run_state(scorer, settings)
    for name, files in feature_units.items():
        states = [_file_state(Path(f)) for f in files]
        meta = meta_path(Path(files[0]).parent, name)  # its extraction record: fps and snippet times
        inputs_state: dict[str, Any] = {"features": states, "record": _file_state(meta) if meta.is_file() else None}
        plan.units.append({"video": name, "kind": "features", "paths": [s[0] for s in states],
                           "score_fingerprint": _score_fingerprint(run_state, settings, name, inputs_state)})
    for video in videos:
        inputs_state = {"video": _file_state(video), "extraction": fingerprint}
        plan.units.append({"video": video.stem, "kind": "video", "paths": [str(video.resolve())],
                           "score_fingerprint": _score_fingerprint(run_state, settings, video.stem,
                                                                   inputs_state)})
    mark_output_dir(out_dir, "score")
    for unit in plan.units:
        if _is_scored(out_dir, unit["video"], unit["score_fingerprint"], plot):
            plan.skipped.append(unit["video"])
        else:
            plan.todo.append(unit)
    return plan


# ------------------------------------------------------------------------------------------------------------- work
def _video_features(unit: dict, extractor: FeatureExtractor | None, settings: ScoreSettings,
                    progress: bool) -> list[Path]:
    """The crop files of a video unit in ``<out>/features``, extracted first unless finished (``progress``: a bar
    counting the video's snippets meanwhile)."""
    # plan_scoring builds both for a plan with video inputs
    assert extractor is not None and settings.extraction_fingerprint is not None
    from adplg.conventions import crop_file_names

    name, folder = unit["video"], Path(settings.features_dir)
    crop_files = crop_file_names(name, extractor.crops, settings.naming)
    if not is_finished(folder, name, crop_files, settings.extraction_fingerprint):
        video = Path(unit["paths"][0])
        with ExtractionProgress([video], enabled=progress, leave=False) as bar:
            record = bar.extract(video, extractor, folder, settings.naming, settings.extraction_fingerprint)
        if record["status"] != "done":
            raise AdplgError(f"feature extraction failed: {record['error']}")
    return [folder / f for f in crop_files]


def score_unit(unit: dict, scorer: Scorer, extractor: FeatureExtractor | None, settings: ScoreSettings, *,
               progress: bool = False) -> dict:
    """Step 2, the unit of work of every engine: score one video (extracting its features first for a video file,
    ``progress`` showing a bar of its snippets) and write its outputs. Never raises for a bad input; returns
    ``{"video", "path", "status": "done" | "failed", "error", "summary" (the video's summary, None when failed),
    "score_fingerprint", "seconds"}``."""
    start = time.perf_counter()
    summary, error = None, None
    for suffix in (".csv", ".json", ".png"):  # left by a run killed while writing this video's outputs
        remove_stale_temporaries(Path(settings.out_dir) / f"{unit['video']}{suffix}")
    try:
        paths = (_video_features(unit, extractor, settings, progress) if unit["kind"] == "video"
                 else [Path(p) for p in unit["paths"]])
        (timeline,) = scorer.score_feature_files(paths, settings.naming, settings.fps, False, settings.allow_incomplete)
        summary = write_timeline(Path(settings.out_dir), timeline, settings.rules,
                                 annotated_spans(settings.annotations, timeline.name, timeline.fps), settings.plot,
                                 extra={"score_fingerprint": unit["score_fingerprint"]})
    except AdplgError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop a long run; it is reported
        log.debug("scoring %s failed", unit["video"], exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
    return {"video": unit["video"], "path": unit["paths"][0], "status": "failed" if error else "done",
            "error": error, "summary": summary, "score_fingerprint": unit["score_fingerprint"],
            "seconds": round(time.perf_counter() - start, 3)}


def _scoring_work(model: ModelSpec, extractor_args: dict | None, settings: ScoreSettings,
                  device: str) -> Callable[[dict], dict]:
    """The setup of a worker in another process: load the model (and the backbone, for video inputs) once on
    ``device``."""
    scorer = model.load(device)
    extractor = None
    if extractor_args is not None:
        extractor = build_extractor(device=device, **extractor_args)
        extractor.decode_threads = 1  # FFmpeg's decoder threads next to PyTorch's pool in one actor can deadlock
    return functools.partial(score_unit, scorer=scorer, extractor=extractor, settings=settings)


def _loaded_scoring_work(scorer: Scorer, extractor: FeatureExtractor | None, settings: ScoreSettings, progress: bool,
                         device: str) -> Callable[[dict], dict]:
    """The setup of an in-process engine: the scorer and extractor the caller loaded (they keep their device)."""
    return functools.partial(score_unit, scorer=scorer, extractor=extractor, settings=settings, progress=progress)


# ------------------------------------------------------------------------------------------------------------ finish
def _saved_summary(out_dir: Path, name: str) -> dict:
    record = json.loads((out_dir / f"{name}.json").read_text())
    return {key: record[key] for key in TIMELINE_SUMMARY_KEYS}


def finish_scoring(plan: ScorePlan, records: Iterable[dict], scorer: Scorer, rules_source: str) -> ScoreReport:
    """Step 3: the report and ``summary.json`` (videos in the plan's order; not written when none was scored), and
    ``features.list`` of ``<out>/features`` with video inputs. A unit to do without a record failed: its Ray worker
    died on it."""
    out_dir = Path(plan.settings.out_dir)
    by_name = {record["video"]: record for record in records}
    report = ScoreReport(out_dir=out_dir, skipped=list(plan.skipped))
    skipped = set(plan.skipped)
    videos = []
    for unit in plan.units:
        name = unit["video"]
        record = by_name.get(name)
        if name in skipped:
            videos.append(_saved_summary(out_dir, name))
        elif record is None:  # its Ray worker died on it
            report.failed.append((unit["paths"][0], worker_died()))
        elif record["status"] == "done":
            report.done.append(name)
            videos.append(record["summary"])
        else:
            report.failed.append((record["path"], record["error"]))
    if videos:
        report.summary = scorer.write_summary(out_dir, videos, plan.settings.rules, rules_source)
    if any(unit["kind"] == "video" for unit in plan.units):
        write_feature_list(Path(plan.settings.features_dir))
    report.wall_seconds = time.perf_counter() - plan.started
    return report


def score_many(scorer: Scorer, inputs, out_dir: Path, *, model: ModelSpec | None = None,
               rules: AlertRules | None = None, rules_source: str | None = None, fps: float | None = None,
               naming: str | None = None, weights=None, backbone: str | None = None, allow_incomplete: bool = False,
               annotations=None, annotation_format: str = "ucf", plot: bool = True, engine: Engine | None = None,
               progress: bool = False, overwrite: bool = False) -> ScoreReport:
    """Score every video of ``inputs`` (feature files or folders, video files or folders) into ``out_dir`` as
    per-video jobs (see the module docstring), skipping videos scored already with the same fingerprint.

    ``scorer``: the model on this machine (settings, rules, and the work of an in-process engine). ``rules`` default
    to the scorer's. ``annotations``: a UCF/XD annotation file or ``{video: [(start_frame, end_frame), ...]}``,
    shaded in the plots. ``engine``: None is a :class:`~adplg.engines.LocalEngine` on the scorer's device, which
    scores on ``scorer`` itself (``model`` unused); an engine that runs elsewhere
    (:class:`~adplg.engines.RayEngine`) loads ``model`` (required then) and the backbone once in each worker.
    ``progress``: bars counting the videos (and, here, each extracted video's snippets). ``overwrite``: write into
    a folder that holds files ``adplg score`` did not write (refused otherwise, see :func:`plan_scoring`)."""
    from adplg.data.gt import read_annotations

    engine = engine if engine is not None else LocalEngine(device=str(scorer.device))
    if not engine.in_process and model is None:
        raise AdplgError(f"expected a ModelSpec, from which the workers of {engine.describe()} load the checkpoint, "
                         "got None", parameter="model")
    rules = rules or scorer.rules
    source = rules_source or (scorer.rules_source if rules is scorer.rules else "given")
    intervals = (read_annotations(annotations, annotation_format)
                 if isinstance(annotations, (str, Path)) else annotations)
    videos = split_inputs(inputs, naming)[0]
    extractor = None
    if engine.in_process and videos:  # the work runs here: the backbone on the model's device, loaded once
        extractor = scorer.video_extractor(weights, backbone, video=videos[0])
    plan = plan_scoring(scorer, inputs, out_dir, rules, fps=fps, naming=naming, weights=weights, backbone=backbone,
                        allow_incomplete=allow_incomplete, annotations=intervals, plot=plot, extractor=extractor,
                        overwrite=overwrite)
    if engine.in_process:
        setup = functools.partial(_loaded_scoring_work, scorer, extractor, plan.settings, progress)
    else:
        assert model is not None  # checked above: an engine needs it
        setup = functools.partial(_scoring_work, model, plan.extractor_args, plan.settings)
    report = finish_scoring(plan, engine.map(plan.todo, setup, progress, "scoring"), scorer, source)
    report.engine = engine.describe()
    return report
