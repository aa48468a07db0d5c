"""Scoring feature files with the snippet branch: per-video score timelines, alert segments, and their CSV, JSON and
PNG outputs.

Feature inputs are ``.npy`` files (``[T, D]`` per crop, or ``[T, C, D]``) or folders of them (searched
recursively). Crop files of one video are grouped by name: ``<video>.npy`` / ``<video>__k.npy`` (``naming="ucf"``
or ``"xd"``) or ``<video>_k.npy`` (``"sht"``); the crop scores are averaged. Snippet scores become frame scores by
the config's snippet layout (``data.layout``, exactly as ``adplg test`` evaluates): ``uniform`` repeats a snippet's
score over its ``frames_per_snippet`` frames; ``spread`` interpolates over the video's frame count.

Times: when the extraction record ``<folder>/meta/<video>.json`` written by ``adplg extract`` holds the snippets'
presentation times from the container (``snippet_start_s`` / ``snippet_end_s``), frame times come from them (a
variable-frame-rate video or one with undecodable frames keeps its real clock); otherwise frame ``i`` is at
``i / fps`` with the record's fps, else ``fps`` (the caller's ``--fps``), else 30 (recorded as assumed).

Half-extracted videos: in a folder written by ``adplg extract`` (it holds ``manifest.json``), a video whose crop files
lack their ``meta/<video>.json`` record (the extraction stopped before it finished the video) or number fewer than
the record (or manifest) says is refused, naming the video and its missing crops, unless ``allow_incomplete``.

Long videos: a video longer than the model's ``max_len`` snippets (its positional embedding rows) is scored in
windows of ``max_len`` snippets overlapping by ``max_len // 4``; where windows overlap their scores are averaged.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adplg.conventions import crop_file_names, split_crop_suffix
from adplg.data.features import FeatureStore
from adplg.data.gt import SnippetLayout
from adplg.data.lists import CropItem
from adplg.errors import AdplgError
from adplg.evaluation.evaluate import forward_in_chunks
from adplg.inference.alerts import AlertRules, Segment, alert_mask, alert_segments, check_number
from adplg.precision import autocast

log = logging.getLogger(__name__)

ASSUMED_FPS = 30.0
INCOMPLETE_SHOWN = 3  # half-extracted videos named one by one in the error; the others are counted


def check_fps(fps: float | None) -> None:
    """A caller's frame rate (``fps=`` / ``--fps``): None, or a finite number > 0."""
    if fps is not None:
        check_number("score", "fps", fps, low=0, low_open=True)


@dataclass
class Timeline:
    """One video's scores: ``snippet_scores [T]``, and per frame ``frame_scores [F]`` at ``times_s [F]`` seconds.

    ``layout`` maps snippets to frames (``F = T * frames_per_snippet`` for ``uniform``; ``video_frames`` for
    ``spread``). ``snippet_start_s`` / ``snippet_end_s`` ``[T]`` are the snippets' presentation times from the
    container when the extraction recorded them (else None, and frame ``i`` is at ``i / fps``)."""

    name: str
    snippet_scores: np.ndarray
    fps: float
    fps_source: str
    features: list[str]
    layout: SnippetLayout = field(default_factory=SnippetLayout)
    video_frames: int | None = None
    snippet_start_s: np.ndarray | None = None
    snippet_end_s: np.ndarray | None = None

    @property
    def snippet_frames(self) -> int:
        return self.layout.frames_per_snippet

    @property
    def frame_scores(self) -> np.ndarray:
        return self.layout.expand(self.snippet_scores, self.video_frames)

    @property
    def times_s(self) -> np.ndarray:
        """Start time of every frame of ``frame_scores``: within snippet ``t``, frames are spaced evenly from its
        start to its end time (the container's clock), else ``i / fps``."""
        if self.snippet_start_s is not None and self.layout.kind == "uniform":
            k = self.snippet_frames
            start, end = np.asarray(self.snippet_start_s, np.float64), np.asarray(self.snippet_end_s, np.float64)
            return (start[:, None] + (end - start)[:, None] * (np.arange(k) / k)[None, :]).reshape(-1)
        return np.arange(len(self.frame_scores)) / self.fps

    @property
    def time_source(self) -> str:
        if self.snippet_start_s is not None and self.layout.kind == "uniform":
            return "container presentation times"
        return f"frame index / fps ({self.fps_source})"

    @property
    def duration_s(self) -> float:
        """From the first frame's start to the last frame's end."""
        if self.snippet_end_s is not None and self.layout.kind == "uniform" and len(self.snippet_end_s):
            return float(self.snippet_end_s[-1])
        return len(self.frame_scores) / self.fps

    def alerts(self, rules: AlertRules) -> tuple[np.ndarray, list[Segment]]:
        """``(alerted [F] bool, segments)`` under ``rules``; segment times are on this timeline's clock."""
        frames = self.frame_scores
        alerted = alert_mask(frames, self.fps, rules)
        edges = np.append(self.times_s, self.duration_s)  # [F + 1]: each frame's start, then the end of the last
        segments = [replace(g, start_s=float(edges[g.start_frame]), end_s=float(edges[g.end_frame]))
                    for g in alert_segments(frames, self.fps, rules)]
        return alerted, segments

    def save(self, out_dir: Path, rules: AlertRules, gt_spans_s: list[tuple[float, float]] | None = None,
             plot: bool = True) -> dict:
        """Write ``<name>.csv``, ``<name>.json`` and ``<name>.png`` into ``out_dir`` (see :func:`write_timeline`)."""
        return write_timeline(out_dir, self, rules, gt_spans_s, plot)


# ------------------------------------------------------------------------------------------------------ inputs
def _npy_files(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(path.rglob("*.npy"))
            if not found:
                raise AdplgError(f"{path}: no .npy feature files found in this folder (expected <video>[__k].npy)")
            files.extend(found)
        elif path.is_file() and path.suffix == ".npy":
            files.append(path)
        elif path.exists():
            raise AdplgError(f"{path}: expected a .npy feature file or a folder of them, got a {path.suffix or 'plain'}"
                             f" file (videos go through `adplg extract` or `adplg score VIDEO --weights ...`)")
        else:
            raise AdplgError(f"feature input not found: {path}")
    return files


def _array_shape(path: Path) -> tuple[int, ...]:
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-data problem
        raise AdplgError(f"{path}: cannot read the .npy header: {exc}") from None


def _extraction_manifest(folder: Path, cache: dict[Path, dict | None]) -> dict | None:
    """The ``manifest.json`` of a folder (an empty dict when it is no JSON object), or None without one."""
    if folder not in cache:
        path = folder / "manifest.json"
        data = None
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            data = data if isinstance(data, dict) else {}
        cache[folder] = data
    return cache[folder]


def incomplete_videos(groups: dict[tuple[Path, str], dict[int, Path]], naming: str = "ucf") -> list[str]:
    """Why each video of an ``adplg extract`` folder in ``groups`` (``(folder, video) -> {crop: file}``) is
    half-extracted: crop files without the ``meta/<video>.json`` record, or fewer crop files than the record (else
    the manifest) names. Videos outside extraction folders (no ``manifest.json`` recording the ``crops`` setting, as
    every manifest of ``adplg extract`` does) are not checked."""
    manifests: dict[Path, dict | None] = {}
    problems = []
    for (folder, video), crops in groups.items():
        manifest = _extraction_manifest(folder, manifests)
        if manifest is None or "crops" not in manifest:
            continue
        record = extraction_record(folder / f"{video}.npy", video)
        expected: list[str] = []
        if record is not None and isinstance(record.get("crop_files"), list):
            expected = [str(f) for f in record["crop_files"]]
        else:
            count = (record or {}).get("crops", manifest.get("crops"))
            if isinstance(count, int) and count > 0:
                expected = crop_file_names(video, count, manifest.get("naming") or naming)
        missing = [f for f in expected if not (folder / f).is_file()]
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        if record is None:
            problems.append(f"{video}: {len(crops)} crop file(s) but no extraction record meta/{video}.json"
                            + (f" (missing crops: {shown})" if missing else ""))
        elif missing:
            problems.append(f"{video}: {len(expected) - len(missing)} of {len(expected)} crop files (missing "
                            f"{shown})")
    return problems


def feature_items(inputs: list[Path], naming: str = "ucf", allow_incomplete: bool = False) -> list[CropItem]:
    """One :class:`CropItem` per crop of every video found in ``inputs``, videos in path order, crops in order.

    A lone ``.npy`` file brings its sibling crop files (same video name, same folder). ``[T, C, D]`` files give one
    item per crop. Two folders holding the same video name are kept apart (the item's ``video`` is the name).
    Half-extracted videos (see the module docstring) are an :class:`AdplgError`, or a warning with
    ``allow_incomplete`` (their crop files are scored as they are)."""
    fmt = "sht" if naming == "sht" else "ucf"
    files = _npy_files(inputs)
    for f in list(files):  # a single crop file named on the command line brings its siblings
        video, _ = split_crop_suffix(f.stem, fmt)
        files.extend(p for p in f.parent.glob("*.npy") if split_crop_suffix(p.stem, fmt)[0] == video)
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for f in dict.fromkeys(files):
        video, crop = split_crop_suffix(f.stem, fmt)
        groups.setdefault((f.parent, video), {})[crop] = f
    names = [video for _, video in groups]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AdplgError(f"video name(s) {duplicates} found in more than one folder "
                         f"({[str(d) for (d, v) in groups if v in duplicates]}); score one folder at a time")
    incomplete = incomplete_videos(groups, naming)
    if incomplete:
        folders = sorted({str(d) for d, _ in groups})
        listed = "; ".join(incomplete[:INCOMPLETE_SHOWN])
        if len(incomplete) > INCOMPLETE_SHOWN:
            listed += f"; and {len(incomplete) - INCOMPLETE_SHOWN} more"
        where = f"{len(incomplete)} half-extracted video(s) in {', '.join(folders)}: {listed}"
        if not allow_incomplete:
            raise AdplgError(f"{where}. Expected every video of an `adplg extract` folder finished (all its crop "
                             f"files and meta/<video>.json); run `adplg extract` again into the same folder to finish "
                             f"them, or pass --allow-incomplete (allow_incomplete=True) to score the crops there are")
        log.warning("%s; scoring the crops there are (allow_incomplete)", where)
    items: list[CropItem] = []
    for (_, video), crops in groups.items():
        for crop, path in sorted(crops.items()):
            shape = _array_shape(path)
            if len(shape) == 3:
                items.extend(CropItem(path, video, c, -1, f"{video}__{c}", array_index=c) for c in range(shape[1]))
            else:
                items.append(CropItem(path, video, crop, -1, f"{video}__{crop}"))
    return items


def extraction_record(feature_file: Path, video: str) -> dict | None:
    """The record ``adplg extract`` wrote for ``video`` (``<folder>/meta/<video>.json``), if any."""
    meta = Path(feature_file).parent / "meta" / f"{video}.json"
    if not meta.is_file():
        return None
    try:
        record = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise AdplgError(f"extraction record {meta}: expected a JSON object (as written by adplg extract)")
    return record


def _record_clock(record: dict | None, snippets: int, where: str) -> tuple[float | None, np.ndarray | None,
                                                                        np.ndarray | None]:
    """``(fps, snippet_start_s [T], snippet_end_s [T])`` from an extraction record; Nones where absent."""
    if record is None:
        return None, None, None
    try:
        fps = float(record.get("fps") or 0)
    except (TypeError, ValueError):
        raise AdplgError(f"{where}: expected a numeric 'fps', got {record.get('fps')!r}") from None
    fps = fps if np.isfinite(fps) and fps > 0 else None
    start, end = record.get("snippet_start_s"), record.get("snippet_end_s")
    if start is None or end is None:
        return fps, None, None
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    if start.shape != (snippets,) or end.shape != (snippets,) or not np.all(np.isfinite(start)) \
            or np.any(end < start):
        raise AdplgError(f"{where}: expected {snippets} snippet start/end times with end >= start, got "
                         f"{start.shape[0] if start.ndim else 0} start and {end.shape[0] if end.ndim else 0} end times")
    return fps, start, end


# ------------------------------------------------------------------------------------------------------ scoring
def window_starts(length: int, max_len: int) -> list[int]:
    """First snippets of the windows that cover ``length`` snippets with windows of ``max_len``, overlapping by
    ``max_len // 4`` (the last window ends at the last snippet)."""
    step = max(1, max_len - max_len // 4)
    starts = list(range(0, length - max_len + 1, step))
    if starts[-1] + max_len < length:
        starts.append(length - max_len)
    return starts


def forward_long(net_s: nn.Module, x: torch.Tensor, batch_snippets: int, max_len: int | None = None) -> torch.Tensor:
    """Scores ``[N, T]`` of ``x [N, T, D]`` like :func:`~adplg.evaluation.evaluate.forward_in_chunks`, also when
    ``T`` exceeds the model's ``max_len`` (default ``net_s.max_len``): then the sequence is scored in overlapping
    windows of ``max_len`` snippets (:func:`window_starts`), batched, and overlapping scores are averaged."""
    max_len = max_len or getattr(net_s, "max_len", None)
    length = x.shape[1]
    if not max_len or length <= max_len:
        return forward_in_chunks(net_s, x, batch_snippets)
    starts = window_starts(length, int(max_len))
    windows = torch.cat([x[:, s:s + max_len] for s in starts])  # [W * N, max_len, D], window-major
    scores = forward_in_chunks(net_s, windows, batch_snippets).view(len(starts), x.shape[0], max_len)
    total = torch.zeros(x.shape[0], length, dtype=scores.dtype, device=scores.device)
    count = torch.zeros(length, dtype=scores.dtype, device=scores.device)
    for w, s in enumerate(starts):
        total[:, s:s + max_len] += scores[w]
        count[s:s + max_len] += 1
    return total / count


@torch.no_grad()
def score_features(net_s: nn.Module, store: FeatureStore, device: torch.device | str = "cpu",
                   precision: str = "fp32", batch_snippets: int = 65536,
                   smooth_window: int = 0) -> dict[str, np.ndarray]:
    """Per video of ``store``, the crop-averaged snippet scores ``[T]`` (``net_s`` in eval mode), smoothed over
    ``smooth_window`` snippets as evaluation does (``eval.smooth_window``; 0 = off). A video longer than the model's
    ``max_len`` is scored in overlapping windows (:func:`forward_long`)."""
    from adplg.evaluation.evaluate import smooth_scores

    by_video: dict[str, list[int]] = {}
    for i, item in enumerate(store.items):
        by_video.setdefault(item.video, []).append(i)
    net_s.eval()
    max_len = getattr(net_s, "max_len", None)
    out = {}
    with autocast(device, precision):
        for video, idxs in by_video.items():
            x = torch.from_numpy(np.stack([store[i] for i in idxs])).to(device)  # [C, T, D]
            if max_len and x.shape[1] > max_len:
                log.info("%s: %d snippets, more than the model's max_len %d: scored in windows of %d snippets "
                         "overlapping by %d, averaged", video, x.shape[1], max_len, max_len, max_len // 4)
            out[video] = smooth_scores(forward_long(net_s, x, batch_snippets, max_len).mean(dim=0).cpu().numpy(),
                                       smooth_window)
    return out


def score_inputs(net_s: nn.Module, inputs: list[Path], feature_dim: int, naming: str = "ucf",
                 fps: float | None = None, device: torch.device | str = "cpu", precision: str = "fp32",
                 batch_snippets: int = 65536, expected_crops: int | None = None, progress: bool = False,
                 layout: SnippetLayout | None = None, smooth_window: int = 0,
                 allow_incomplete: bool = False) -> list[Timeline]:
    """Validate and score every video of the feature ``inputs``; one :class:`Timeline` per video, its frames laid
    out by ``layout`` (the config's ``data.layout``). A crop count other than ``expected_crops`` (the checkpoint's
    test crops) is scored but warned about. ``fps``: None or a finite rate > 0. Half-extracted videos of an
    ``adplg extract`` folder are refused unless ``allow_incomplete`` (see the module docstring)."""
    check_fps(fps)
    layout = layout or SnippetLayout()
    items = feature_items(inputs, naming, allow_incomplete)
    store = FeatureStore.load(items, feature_dim=feature_dim, mmap=True, progress=progress,
                              context="features to score")  # memory-mapped: one video in memory at a time
    scores = score_features(net_s, store, device, precision, batch_snippets, smooth_window)
    timelines = []
    for video, snippet_scores in scores.items():
        files = [str(it.path) for it in items if it.video == video]
        crops = sum(it.video == video for it in items)
        if expected_crops is not None and crops != expected_crops:
            log.warning("%s: %d crop(s) found, but the model was evaluated on %d; scores average the %d found",
                        video, crops, expected_crops, crops)
        record = extraction_record(Path(files[0]), video)
        recorded, start, end = _record_clock(record, len(snippet_scores), f"extraction record of {video}")
        if recorded is not None:
            rate, source = recorded, "extraction record"
        elif fps is not None:
            rate, source = float(fps), "--fps"
        else:
            rate, source = ASSUMED_FPS, "assumed (no extraction record; pass --fps)"
            log.warning("%s: frame rate unknown, assuming %.0f fps (pass --fps)", video, ASSUMED_FPS)
        video_frames = None
        if layout.kind == "spread":
            video_frames = (record or {}).get("frames_decoded") or (record or {}).get("container_frames")
            if not video_frames:
                raise AdplgError(f"{video}: the config's 'spread' snippet layout needs the video's frame count, "
                                 f"expected an extraction record meta/{video}.json with frames_decoded, got none")
        if start is not None and layout.kind == "uniform" and layout.frames_per_snippet != (record or {}).get(
                "snippet_frames", layout.frames_per_snippet):
            start = end = None  # the record's snippets are not the layout's: fall back to the frame rate
        timelines.append(Timeline(video, snippet_scores, rate, source, list(dict.fromkeys(files)), layout,
                                  video_frames, start, end))
    return timelines


# ------------------------------------------------------------------------------------------------------ outputs
def annotated_spans(annotations: dict[str, list[tuple[int, int]]] | None, name: str,
                    fps: float) -> list[tuple[float, float]] | None:
    """The annotated ``[start, end)`` frame intervals of ``name`` in seconds (None without annotations)."""
    from adplg.data.gt import annotation_key

    if annotations is None:
        return None
    return [(s / fps, e / fps) for s, e in annotations.get(annotation_key(name), [])]


# the keys of a video's summary (what write_timeline returns; its <name>.json starts with them)
TIMELINE_SUMMARY_KEYS = ("video", "fps", "fps_source", "snippets", "frames", "duration_s", "time_source", "max_score",
                         "alert_seconds", "segments")


def write_timeline(out_dir: Path, timeline: Timeline, rules: AlertRules,
                   gt_spans_s: list[tuple[float, float]] | None = None, plot: bool = True,
                   extra: dict | None = None) -> dict:
    """``<name>.csv`` (frame, time_s, score, alert), ``<name>.json`` (the same arrays, segments, rules, and the
    ``extra`` keys) and ``<name>.png``; returns the video's summary (``TIMELINE_SUMMARY_KEYS``)."""
    from adplg.evaluation.plots import plot_timeline
    from adplg.io import atomic_write_text

    out_dir = Path(out_dir)
    frames, times = timeline.frame_scores, timeline.times_s
    alerted, segments = timeline.alerts(rules)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time_s", "score", "alert"])
    writer.writerows((i, f"{t:.4f}", f"{s:.6f}", int(a)) for i, (t, s, a) in enumerate(zip(times, frames, alerted,
                                                                                            strict=True)))
    atomic_write_text(out_dir / f"{timeline.name}.csv", buffer.getvalue())

    summary = {"video": timeline.name, "fps": timeline.fps, "fps_source": timeline.fps_source,
               "snippets": len(timeline.snippet_scores), "frames": len(frames),
               "duration_s": timeline.duration_s, "time_source": timeline.time_source,
               "max_score": float(frames.max(initial=0.0)),
               "alert_seconds": float(sum(g.duration_s for g in segments)),
               "segments": [g.to_dict() for g in segments]}
    payload = {**summary, "snippet_frames": timeline.snippet_frames, "features": timeline.features,
               "alert_rules": rules.to_dict(), "time_s": np.round(times, 4).tolist(),
               "score": np.round(frames.astype(np.float64), 6).tolist(), "alert": alerted.astype(int).tolist(),
               **(extra or {})}
    atomic_write_text(out_dir / f"{timeline.name}.json", json.dumps(payload))
    if plot:
        plot_timeline(out_dir / f"{timeline.name}.png", timeline.name, times, frames,
                      [(s.start_s, s.end_s) for s in segments], rules.on_threshold, rules.off_threshold, gt_spans_s)
    return summary
