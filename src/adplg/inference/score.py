"""Scoring feature files with the snippet branch: per-video score timelines, alert segments, and their CSV, JSON and
PNG outputs.

Feature inputs are ``.npy`` files (``[T, D]`` per crop, or ``[T, C, D]``) or folders of them (searched
recursively). Crop files of one video are grouped by name: ``<video>.npy`` / ``<video>__k.npy`` (``naming="ucf"``
or ``"xd"``) or ``<video>_k.npy`` (``"sht"``); the crop scores are averaged. A snippet score covers its 16 frames
(``np.repeat``, as in evaluation), so a timeline has ``T * 16`` frames; frame ``i`` is at ``i / fps`` seconds. The
frame rate comes from the extraction record ``<folder>/meta/<video>.json`` written by ``adplg extract``, else from
``fps`` (the caller's ``--fps``), else 30 (recorded as assumed).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adplg.conventions import SNIPPET_FRAMES, split_crop_suffix
from adplg.data.features import FeatureStore
from adplg.data.lists import CropItem
from adplg.errors import AdplgError
from adplg.evaluation.evaluate import forward_in_chunks
from adplg.inference.alerts import AlertRules, Segment, alert_mask, alert_segments
from adplg.precision import autocast

log = logging.getLogger(__name__)

ASSUMED_FPS = 30.0


@dataclass
class Timeline:
    """One video's scores: ``snippet_scores [T]``; ``frame_scores`` ``[T * snippet_frames]`` at ``times_s``."""

    name: str
    snippet_scores: np.ndarray
    fps: float
    fps_source: str
    features: list[str]
    snippet_frames: int = SNIPPET_FRAMES

    @property
    def frame_scores(self) -> np.ndarray:
        return np.repeat(self.snippet_scores, self.snippet_frames)

    @property
    def times_s(self) -> np.ndarray:
        return np.arange(len(self.snippet_scores) * self.snippet_frames) / self.fps


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


def feature_items(inputs: list[Path], naming: str = "ucf") -> list[CropItem]:
    """One :class:`CropItem` per crop of every video found in ``inputs``, videos in path order, crops in order.

    A lone ``.npy`` file brings its sibling crop files (same video name, same folder). ``[T, C, D]`` files give one
    item per crop. Two folders holding the same video name are kept apart (the item's ``video`` is the name)."""
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
    items: list[CropItem] = []
    for (_, video), crops in groups.items():
        for crop, path in sorted(crops.items()):
            shape = _array_shape(path)
            if len(shape) == 3:
                items.extend(CropItem(path, video, c, -1, f"{video}__{c}", array_index=c) for c in range(shape[1]))
            else:
                items.append(CropItem(path, video, crop, -1, f"{video}__{crop}"))
    return items


def recorded_fps(feature_file: Path, video: str) -> float | None:
    """The frame rate ``adplg extract`` recorded for ``video`` (``<folder>/meta/<video>.json``), if any."""
    meta = Path(feature_file).parent / "meta" / f"{video}.json"
    if not meta.is_file():
        return None
    try:
        fps = float(json.loads(meta.read_text()).get("fps") or 0)
    except (json.JSONDecodeError, TypeError, ValueError):
        raise AdplgError(f"extraction record {meta} is not valid JSON with a numeric 'fps'") from None
    return fps if fps > 0 else None


# ------------------------------------------------------------------------------------------------------ scoring
@torch.no_grad()
def score_features(net_s: nn.Module, store: FeatureStore, device: torch.device | str = "cpu",
                   precision: str = "fp32", batch_snippets: int = 65536) -> dict[str, np.ndarray]:
    """Per video of ``store``, the crop-averaged snippet scores ``[T]`` (``net_s`` in eval mode)."""
    by_video: dict[str, list[int]] = {}
    for i, item in enumerate(store.items):
        by_video.setdefault(item.video, []).append(i)
    net_s.eval()
    out = {}
    with autocast(device, precision):
        for video, idxs in by_video.items():
            x = torch.from_numpy(np.stack([store[i] for i in idxs])).to(device)  # [C, T, D]
            out[video] = forward_in_chunks(net_s, x, batch_snippets).mean(dim=0).cpu().numpy()
    return out


def score_inputs(net_s: nn.Module, inputs: list[Path], feature_dim: int, naming: str = "ucf",
                 fps: float | None = None, device: torch.device | str = "cpu", precision: str = "fp32",
                 batch_snippets: int = 65536, expected_crops: int | None = None,
                 progress: bool = False) -> list[Timeline]:
    """Validate and score every video of the feature ``inputs``; one :class:`Timeline` per video. A crop count
    other than ``expected_crops`` (the checkpoint's test crops) is scored but warned about."""
    items = feature_items(inputs, naming)
    store = FeatureStore.load(items, feature_dim=feature_dim, mmap=True, progress=progress,
                              context="features to score")  # memory-mapped: one video in memory at a time
    scores = score_features(net_s, store, device, precision, batch_snippets)
    timelines = []
    for video, snippet_scores in scores.items():
        files = [str(it.path) for it in items if it.video == video]
        crops = sum(it.video == video for it in items)
        if expected_crops is not None and crops != expected_crops:
            log.warning("%s: %d crop(s) found, but the model was evaluated on %d; scores average the %d found",
                        video, crops, expected_crops, crops)
        recorded = recorded_fps(Path(files[0]), video)
        if recorded is not None:
            rate, source = recorded, "extraction record"
        elif fps is not None:
            rate, source = float(fps), "--fps"
        else:
            rate, source = ASSUMED_FPS, "assumed (no extraction record; pass --fps)"
            log.warning("%s: frame rate unknown, assuming %.0f fps (pass --fps)", video, ASSUMED_FPS)
        timelines.append(Timeline(video, snippet_scores, rate, source, list(dict.fromkeys(files))))
    return timelines


# ------------------------------------------------------------------------------------------------------ outputs
def annotated_spans(annotations: dict[str, list[tuple[int, int]]] | None, name: str,
                    fps: float) -> list[tuple[float, float]] | None:
    """The annotated ``[start, end)`` frame intervals of ``name`` in seconds (None without annotations)."""
    from adplg.data.gt import annotation_key

    if annotations is None:
        return None
    return [(s / fps, e / fps) for s, e in annotations.get(annotation_key(name), [])]


def write_timeline(out_dir: Path, timeline: Timeline, rules: AlertRules,
                   gt_spans_s: list[tuple[float, float]] | None = None, plot: bool = True) -> dict:
    """``<name>.csv`` (frame, time_s, score, alert), ``<name>.json`` (the same arrays, segments, rules) and
    ``<name>.png``; returns the video's summary."""
    from adplg.evaluation.plots import plot_timeline
    from adplg.io import atomic_write_text

    out_dir = Path(out_dir)
    frames, times = timeline.frame_scores, timeline.times_s
    alerted = alert_mask(frames, timeline.fps, rules)
    segments: list[Segment] = alert_segments(frames, timeline.fps, rules)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time_s", "score", "alert"])
    writer.writerows((i, f"{t:.4f}", f"{s:.6f}", int(a)) for i, (t, s, a) in enumerate(zip(times, frames, alerted,
                                                                                            strict=True)))
    atomic_write_text(out_dir / f"{timeline.name}.csv", buffer.getvalue())

    summary = {"video": timeline.name, "fps": timeline.fps, "fps_source": timeline.fps_source,
               "snippets": len(timeline.snippet_scores), "frames": len(frames),
               "duration_s": len(frames) / timeline.fps, "max_score": float(frames.max(initial=0.0)),
               "alert_seconds": float(alerted.sum() / timeline.fps), "segments": [s.to_dict() for s in segments]}
    payload = {**summary, "snippet_frames": timeline.snippet_frames, "features": timeline.features,
               "alert_rules": rules.to_dict(), "time_s": np.round(times, 4).tolist(),
               "score": np.round(frames.astype(np.float64), 6).tolist(), "alert": alerted.astype(int).tolist()}
    atomic_write_text(out_dir / f"{timeline.name}.json", json.dumps(payload))
    if plot:
        plot_timeline(out_dir / f"{timeline.name}.png", timeline.name, times, frames,
                      [(s.start_s, s.end_s) for s in segments], rules.on_threshold, rules.off_threshold, gt_spans_s)
    return summary
