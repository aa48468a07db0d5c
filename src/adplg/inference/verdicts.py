"""Reviewers' verdicts on alerts, as the review site's "Download verdicts" button (:mod:`adplg.report`) writes them,
and their use in calibration.

The file (``format: "adplg-verdicts"``, ``version: 1``)::

    {"format": "adplg-verdicts", "version": 1, "report_id": "...", "scores_dir": "/abs/scores",
     "checkpoint": ["/abs/ckpt.safetensors"], "checkpoint_sha256": "..." | null, "alert_rules": {...},
     "verdicts": [{"video": "cam1", "start_s": 12.3, "end_s": 20.1, "verdict": "true_alert" | "false_alert",
                   "peak_score": 0.91, "features": ["/abs/scores/features/cam1.npy"], "decided_at": "..."}]}

Calibration (:meth:`Scorer.calibrate(..., verdicts=) <adplg.inference.scorer.Scorer.calibrate>`, ``adplg calibrate
--verdicts FILE``) counts the footage of every *false* alert as extra normal footage: a reviewer has seen it and found
nothing abnormal. Its features are scored again with the model being calibrated (so
verdicts made on another checkpoint's alerts still apply), the frames inside ``[start_s, end_s)`` are cut out, and
each span joins the normal videos as one more short "video". True alerts are not used: calibration reads normal
footage only. Because these spans are the footage the model found most alarming, they pull the threshold up more
than the same number of random normal seconds would: that is the point (the reviewed false alarms should not recur),
but the achieved false-alarm rate is then measured on a mix that is harder than typical footage.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np

from adplg.errors import AdplgError
from adplg.io import plain_file_name, read_json

log = logging.getLogger(__name__)

FORMAT = "adplg-verdicts"
VERSION = 1
VERDICTS = ("true_alert", "false_alert")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """A reviewer's verdict on the alert ``[start_s, end_s)`` of ``video``, whose ``features`` files it was scored
    from."""

    video: str
    start_s: float
    end_s: float
    verdict: str
    features: tuple[str, ...] = ()

    @property
    def is_false_alert(self) -> bool:
        """True when the reviewer found nothing abnormal in the alert."""
        return self.verdict == "false_alert"


@dataclass(kw_only=True)
class Verdicts:
    """A verdicts file: where it is, the scores and checkpoint the report was made from, and its ``items``."""

    path: Path
    scores_dir: str | None
    checkpoint_sha256: str | None
    items: list[Verdict] = field(default_factory=list)
    duplicates_dropped: int = 0

    @property
    def false_alerts(self) -> list[Verdict]:
        """The verdicts of the false alerts (the footage calibration adds as normal)."""
        return [v for v in self.items if v.is_false_alert]


def _number(value: object) -> TypeGuard[float]:
    """True for a finite real number (an int or a float, not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(float(value)))


def read_verdicts(path: str | Path) -> Verdicts:
    """Read and check a verdicts file; every problem is an :class:`AdplgError` naming the file, the entry and the
    key, with what was expected and what was found."""
    path = Path(path)
    where = f"verdicts file {path}"
    data = read_json(path, where, "the verdicts.json downloaded from an adplg report")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise AdplgError(f"{where}: expected a JSON object with \"format\": \"{FORMAT}\" (downloaded from an adplg "
                         f"report), got format {got!r}")
    if data.get("version") != VERSION:
        raise AdplgError(f"{where}: expected version {VERSION}, got {data.get('version')!r}")
    entries = data.get("verdicts")
    if not isinstance(entries, list):
        raise AdplgError(f"{where}: expected a list \"verdicts\", got {type(entries).__name__}")
    items: list[Verdict] = []
    seen: set[tuple[str, float, float, str]] = set()
    duplicates = 0
    for i, entry in enumerate(entries):
        at = f"{where}, verdict {i}"
        if not isinstance(entry, dict):
            raise AdplgError(f"{at}: expected an object, got {type(entry).__name__}")
        video, start, end, verdict = (entry.get(k) for k in ("video", "start_s", "end_s", "verdict"))
        if not isinstance(video, str) or not plain_file_name(video):
            raise AdplgError(f"{at}: expected a video name in \"video\" (a plain file name: no folder separator, "
                             f"not '..'), got {video!r}")
        if not (_number(start) and _number(end) and 0 <= start < end):
            raise AdplgError(f"{at} ({video}): expected numbers 0 <= start_s < end_s, got start_s {start!r} and "
                             f"end_s {end!r}")
        if verdict not in VERDICTS:
            raise AdplgError(f"{at} ({video}): expected \"verdict\" {' or '.join(map(repr, VERDICTS))}, got "
                             f"{verdict!r}")
        features = entry.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise AdplgError(f"{at} ({video}): expected \"features\" to be a list of file paths, got {features!r}")
        item = Verdict(video=video, start_s=float(start), end_s=float(end), verdict=verdict,
                       features=tuple(features))
        if (video, item.start_s, item.end_s, verdict) in seen:
            duplicates += 1
        else:
            seen.add((video, item.start_s, item.end_s, verdict))
            items.append(item)
    if duplicates:
        log.warning("%s: %d duplicate verdict(s) dropped (the same alert counts once); %d verdict(s) kept", where,
                    duplicates, len(items))
    scores_dir = data.get("scores_dir")
    if scores_dir is not None and not isinstance(scores_dir, str):
        raise AdplgError(f"{where}: expected \"scores_dir\" to be a folder path, got {scores_dir!r}")
    if scores_dir:  # a relative scores folder is the verdicts file's neighbour, not the current directory's
        scores_dir = str(path.parent / scores_dir)
    sha = data.get("checkpoint_sha256")
    return Verdicts(path=path, scores_dir=scores_dir, checkpoint_sha256=sha if isinstance(sha, str) else None,
                    items=items, duplicates_dropped=duplicates)


def _recorded_features(verdicts: Verdicts, video: str) -> set[Path]:
    """The feature files ``<scores_dir>/<video>.json`` (the score output) says the video was scored from."""
    if not verdicts.scores_dir:
        return set()
    record = Path(verdicts.scores_dir) / f"{video}.json"
    try:
        data = read_json(record, f"score file {record}", "the file adplg score wrote")
    except AdplgError:
        return set()
    files = data.get("features") if isinstance(data, dict) else None
    return {Path(f).resolve() for f in files or [] if isinstance(f, str)}


def _features_of(verdict: Verdict, verdicts: Verdicts) -> list[Path]:
    """The feature files of a verdict's video: as recorded (a relative path against the verdicts file's folder),
    else in ``<scores_dir>/features``. Each must lie in the scores folder (or, without one, the verdicts file's
    folder) or be one the video's score file records; any other path is refused, never read."""
    scores = Path(verdicts.scores_dir).resolve() if verdicts.scores_dir else None
    allowed_root = scores or verdicts.path.parent.resolve()
    recorded = _recorded_features(verdicts, verdict.video)
    found = []
    for feature in verdict.features:
        candidates = [verdicts.path.parent / feature]
        if scores is not None:
            candidates.append(scores / "features" / Path(feature).name)
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise AdplgError(f"verdicts file {verdicts.path}: the features of {verdict.video} are not found at "
                             f"{feature} (expected the feature files the video was scored from, kept by "
                             f"`adplg score` in OUT/features for video inputs)")
        resolved = match.resolve()
        if not resolved.is_relative_to(allowed_root) and resolved not in recorded:
            raise AdplgError(f"verdicts file {verdicts.path}: the features of {verdict.video}, {feature}, lie "
                             f"outside the scores folder {allowed_root} and are not among the feature files its "
                             f"{verdict.video}.json records (got {resolved}); refusing to read them: expected the "
                             "feature files the video was scored from")
        found.append(match)
    if not found:
        raise AdplgError(f"verdicts file {verdicts.path}: the false alert of {verdict.video} at "
                         f"{verdict.start_s:.2f}-{verdict.end_s:.2f} s names no feature files (expected \"features\")")
    return found


def false_alert_timelines(scorer, verdicts: Verdicts, *, fps: float | None = None, naming: str | None = None,
                          allow_incomplete: bool = False) -> list:
    """The footage of every false alert of ``verdicts``, scored by ``scorer``: one
    :class:`~adplg.inference.timeline.Timeline` per alert holding the frame scores inside ``[start_s, end_s)`` (one
    frame per "snippet", at the video's frame rate), named ``"<video> <start>-<end> s (false alert)"``, ready to join
    the normal footage of :meth:`~adplg.inference.scorer.Scorer.calibrate`. An :class:`AdplgError` when a video's
    features are missing or an alert lies outside its video."""
    from adplg.data.gt import SnippetLayout
    from adplg.inference.timeline import Timeline

    false_alerts = verdicts.false_alerts
    if not false_alerts:
        return []
    if verdicts.checkpoint_sha256 and verdicts.checkpoint_sha256 != scorer.sha256:
        log.info("verdicts were made on alerts of another checkpoint; their footage is scored with this one")
    by_video: dict[str, list[Path]] = {}
    for verdict in false_alerts:
        by_video.setdefault(verdict.video, _features_of(verdict, verdicts))
    paths = list(dict.fromkeys(p for files in by_video.values() for p in files))
    timelines = {t.name: t for t in scorer.score(paths, fps=fps, naming=naming, allow_incomplete=allow_incomplete)}
    spans = []
    for verdict in false_alerts:
        timeline = timelines.get(verdict.video)
        if timeline is None:
            raise AdplgError(f"verdicts file {verdicts.path}: the features {[str(p) for p in by_video[verdict.video]]}"
                             f" hold no video named {verdict.video} (found {sorted(timelines)})")
        inside = (timeline.times_s >= verdict.start_s) & (timeline.times_s < verdict.end_s)
        if not inside.any():
            raise AdplgError(f"verdicts file {verdicts.path}: the false alert of {verdict.video} at "
                             f"{verdict.start_s:.2f}-{verdict.end_s:.2f} s lies outside the video (0-"
                             f"{timeline.duration_s:.2f} s); expected verdicts on this video's own alerts")
        spans.append(Timeline(name=f"{verdict.video} {verdict.start_s:.2f}-{verdict.end_s:.2f} s (false alert)",
                              snippet_scores=timeline.frame_scores[inside], fps=timeline.fps,
                              fps_source=timeline.fps_source, features=timeline.features,
                              layout=SnippetLayout(kind="uniform", frames_per_snippet=1)))
    return spans


def verdict_record(verdicts: Verdicts, spans: Sequence) -> dict:
    """What calibration records about the verdicts it used (saved in the rules' ``calibration``)."""
    seconds = sum(len(t.frame_scores) / t.fps for t in spans)
    return {"file": str(verdicts.path), "false_alerts": len(verdicts.false_alerts),
            "true_alerts_not_used": len(verdicts.items) - len(verdicts.false_alerts),
            "false_alert_seconds": round(seconds, 3),
            **({"duplicates_dropped": verdicts.duplicates_dropped} if verdicts.duplicates_dropped else {})}
