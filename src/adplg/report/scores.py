"""Reading a folder of ``adplg score`` outputs back: ``summary.json`` and one ``<name>.json`` per video, each checked
like user input (keys, types) before the report uses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adplg.errors import AdplgError
from adplg.io import plain_file_name, read_json

SCORE_KEYS: dict[str, type | tuple[type, ...]] = {
    "video": str, "fps": (int, float), "duration_s": (int, float), "time_s": list, "score": list, "segments": list,
    "alert_rules": dict}
SEGMENT_KEYS = ("start_s", "end_s", "peak_score")


@dataclass(kw_only=True)
class ScoredVideo:
    """One video's ``adplg score`` output: ``times_s [F]`` and ``scores [F]`` per frame, ``segments`` (the alerts as
    ``adplg score`` wrote them: start/end in seconds and frames, peak and mean score), ``rules`` (the alert rules
    used) and the ``features`` files it was scored from."""

    name: str
    score_file: Path
    fps: float
    duration_s: float
    times_s: np.ndarray
    scores: np.ndarray
    segments: list[dict]
    rules: dict
    features: list[str] = field(default_factory=list)
    time_source: str = ""  # the clock of times_s, in the extraction record's words ("" in older score files)

    @property
    def max_score(self) -> float:
        """The highest frame score (0 for a video without frames)."""
        return float(self.scores.max(initial=0.0))

    @property
    def alert_seconds(self) -> float:
        """The total duration of the alert segments, in seconds."""
        return float(sum(g["end_s"] - g["start_s"] for g in self.segments))


def _load_json(path: Path, what: str):
    return read_json(path, f"{what} {path}", "the file as adplg score wrote it")


def _type_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "a string", "int": "a number", "float": "a number", "list": "a list", "dict": "an object"}
    return " or ".join(dict.fromkeys(names[k.__name__] for k in kinds))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _checked_segment(path: Path, i: int, g) -> dict:
    """Segment ``i`` of score file ``path``: an object with finite numbers ``start_s <= end_s`` (both >= 0),
    ``peak_score`` in [0, 1] and, when present, ``mean_score`` in [0, 1]; an :class:`AdplgError` otherwise."""
    if not isinstance(g, dict) or any(not _finite(g.get(k)) for k in SEGMENT_KEYS):
        raise AdplgError(f"score file {path}: segment {i}: expected an object with finite numbers "
                         f"{list(SEGMENT_KEYS)}, got {str(g)[:80]!r}")
    if not 0 <= g["start_s"] <= g["end_s"] or not 0 <= g["peak_score"] <= 1:
        raise AdplgError(f"score file {path}: segment {i}: expected 0 <= start_s <= end_s and peak_score in [0, 1], "
                         f"got start_s {g['start_s']!r}, end_s {g['end_s']!r}, peak_score {g['peak_score']!r}")
    if "mean_score" in g and not (_finite(g["mean_score"]) and 0 <= g["mean_score"] <= 1):
        raise AdplgError(f"score file {path}: segment {i}: key 'mean_score': expected a number in [0, 1], got "
                         f"{str(g['mean_score'])[:40]!r}")
    return g


def load_scored_video(path: Path) -> ScoredVideo:
    """Read and check one ``<name>.json`` written by ``adplg score``; an :class:`AdplgError` names the file, the key,
    what was expected and what was found."""
    path = Path(path)
    data = _load_json(path, "score file")
    expected = "the per-video JSON written by adplg score"
    if not isinstance(data, dict):
        raise AdplgError(f"score file {path}: expected a JSON object ({expected}), got a {type(data).__name__}")
    missing = sorted(k for k in SCORE_KEYS if k not in data)
    if missing:
        raise AdplgError(f"score file {path}: missing key(s) {missing} ({expected})")
    for key, kind in SCORE_KEYS.items():
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AdplgError(f"score file {path}: key {key!r}: expected {_type_names(kind)}, got "
                             f"{type(value).__name__} {str(value)[:40]!r}")
    try:
        times = np.asarray(data["time_s"], dtype=np.float64)
        scores = np.asarray(data["score"], dtype=np.float64)
    except (TypeError, ValueError):
        raise AdplgError(f"score file {path}: keys 'time_s' and 'score': expected lists of numbers") from None
    if times.ndim != 1 or times.shape != scores.shape:
        raise AdplgError(f"score file {path}: expected 'time_s' and 'score' of the same length, got "
                         f"{times.size} and {scores.size}")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(scores))):
        raise AdplgError(f"score file {path}: expected finite numbers in 'time_s' and 'score', found NaN or Inf")
    if not (np.isfinite(data["fps"]) and data["fps"] > 0 and np.isfinite(data["duration_s"])
            and data["duration_s"] >= 0):
        raise AdplgError(f"score file {path}: expected finite fps > 0 and duration_s >= 0, got fps {data['fps']!r} "
                         f"and duration_s {data['duration_s']!r}")
    if not plain_file_name(data["video"]):
        raise AdplgError(f"score file {path}: key 'video': expected a plain file name (no folder separator, not "
                         f"'..'), got {data['video']!r}")
    segments = [_checked_segment(path, i, g) for i, g in enumerate(data["segments"])]
    features = [str(f) for f in data.get("features") or [] if isinstance(f, str)]
    return ScoredVideo(name=data["video"], score_file=path, fps=float(data["fps"]),
                       duration_s=float(data["duration_s"]), times_s=times, scores=scores, segments=segments,
                       rules=data["alert_rules"], features=features,
                       time_source=data["time_source"] if isinstance(data.get("time_source"), str) else "")


def read_scores(scores_dir: Path) -> tuple[dict, list[Path]]:
    """``(summary, score files)`` of an ``adplg score`` output folder: ``summary.json`` (an empty dict without one)
    and the ``<name>.json`` of every video, in the summary's order (else by name). Raises :class:`AdplgError` when
    the folder is missing or holds no score outputs."""
    scores_dir = Path(scores_dir)
    if not scores_dir.is_dir():
        what = "is a file" if scores_dir.exists() else "not found"
        raise AdplgError(f"scores folder {scores_dir}: {what}; expected the folder `adplg score --out` wrote")
    summary_file = scores_dir / "summary.json"
    if summary_file.is_file():
        summary = _load_json(summary_file, "score summary")
        videos = summary.get("videos") if isinstance(summary, dict) else None
        if not isinstance(videos, list) or not all(isinstance(v, dict) and isinstance(v.get("video"), str)
                                                   for v in videos):
            raise AdplgError(f"score summary {summary_file}: expected an object with a list 'videos' of "
                             f"{{\"video\": name, ...}} (as adplg score writes it)")
        names = [v["video"] for v in videos]
        bad = [n for n in names if not plain_file_name(n)]
        if bad:
            raise AdplgError(f"score summary {summary_file}: video name {bad[0]!r}: expected a plain file name (no "
                             "folder separator, not '..'), so its score file lies in the scores folder")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise AdplgError(f"score summary {summary_file}: video(s) {repeated[:5]} listed more than once; expected "
                             "each video once (as adplg score writes it)")
        files = [scores_dir / f"{name}.json" for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise AdplgError(f"scores folder {scores_dir}: summary.json lists {len(files)} video(s) but "
                             f"{len(missing)} score file(s) are missing: {', '.join(missing[:5])}"
                             + (" ..." if len(missing) > 5 else ""))
    else:
        summary = {}
        files = [f for f in sorted(scores_dir.glob("*.json")) if _looks_like_scores(f)]
    if not files:
        raise AdplgError(f"scores folder {scores_dir}: no adplg score outputs found (expected summary.json and a "
                         f"<video>.json per video, as `adplg score --out {scores_dir}` writes them)")
    return summary, files


def _looks_like_scores(path: Path) -> bool:
    """Cheap check without parsing: the file's first bytes hold the keys every ``adplg score`` JSON starts with."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return b'"video"' in head and b'"fps"' in head
