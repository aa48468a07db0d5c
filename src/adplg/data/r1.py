"""The R1 benchmark (``../shared/docs/BENCHMARKS.md``): real I3D Kinetics-400 logits (400-d, 1 crop, 200 snippets
spread over each video) of 659 UCF-Crime train videos and 284 test videos, with the official test annotations.

The features come as two ``.npz`` files (key = video name, ``[200, 400]`` float16) and an ``index.csv`` with frame
counts and 1-based inclusive anomaly intervals. This module turns them into the same :class:`TrainSet` /
:class:`TestSet` the file-based datasets give, so the training engine and evaluation are unchanged.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from adplg.config import Config
from adplg.data.datasets import TestSet, TrainSet, train_set_from_store
from adplg.data.features import FeatureStore
from adplg.data.gt import SnippetLayout, build_frame_gt
from adplg.data.lists import CropItem, group_videos
from adplg.errors import AdplgError

R1_FOLDER = Path("data") / "features" / "ucf_i3d_kinetics400_logits_xiaoxuanyao"


def read_index(path: Path) -> dict[str, dict]:
    """``index.csv`` -> {video: {split, label, class, frames, intervals [(s, e) 1-based inclusive]}}."""
    out = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            spans = [tuple(int(x) for x in part.split("-")) for part in
                     row["anomaly_intervals_1based_inclusive"].split(";") if part]
            out[row["video"]] = {"split": row["split"], "label": int(row["label"]), "class": row["class"],
                                 "frames": int(row["num_frames_annotation"]), "intervals": spans}
    return out


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise AdplgError(f"R1 feature file not found: {path}")
    with np.load(path) as archive:
        return {name: archive[name].astype(np.float32) for name in sorted(archive.files)}


def _items(arrays: dict[str, np.ndarray], index: dict[str, dict], source: Path) -> list[CropItem]:
    missing = [name for name in arrays if name not in index]
    if missing:
        raise AdplgError(f"{source}: {len(missing)} videos are not in index.csv, e.g. {missing[:3]}")
    # abnormal videos first, as in the official lists
    names = sorted(arrays, key=lambda n: (-index[n]["label"], n))
    return [CropItem(path=source, video=n, crop=0, label=index[n]["label"], history_key=n.split("_x264")[0])
            for n in names]


def half_of(items: list[CropItem], half: int) -> list[CropItem]:
    """The first (``half=1``) or second (``half=2``) half of each label's videos, in list order (by name, so the
    abnormal halves hold mostly different classes)."""
    if half not in (1, 2):
        raise AdplgError(f"the training half must be 1 or 2, got {half!r}")
    out = []
    for label in (1, 0):
        of_label = [item for item in items if item.label == label]
        cut = len(of_label) // 2
        out += of_label[:cut] if half == 1 else of_label[cut:]
    return out


def load_r1(cfg: Config, folder: Path, train_half: int | None = None) -> tuple[TrainSet, TestSet]:
    """Train and test sets of R1 from ``folder`` (the staged feature folder), pooled and laid out per ``cfg``;
    ``train_half`` (1 or 2) trains on that half of the training videos only (:func:`half_of`)."""
    folder = Path(folder)
    index = read_index(folder / "index.csv")
    train_arrays, test_arrays = _load_npz(folder / "train_subset.npz"), _load_npz(folder / "test.npz")
    train_items = _items(train_arrays, index, folder / "train_subset.npz")
    if train_half is not None:
        train_items = half_of(train_items, train_half)
    train_store = FeatureStore(train_items, [train_arrays[i.video] for i in train_items])
    train = train_set_from_store(cfg, train_store)

    test_items = _items(test_arrays, index, folder / "test.npz")
    store = FeatureStore(test_items, [test_arrays[i.video] for i in test_items])
    videos = group_videos(test_items)
    layout = SnippetLayout(kind="spread", window=cfg.data.layout.window)
    frames = [index[v.name]["frames"] for v in videos]
    gt = build_frame_gt([v.name for v in videos], [len(store[i]) for i in range(len(videos))],
                        {v.name: index[v.name]["intervals"] for v in videos}, layout=layout, video_frames=frames,
                        end_inclusive=True, one_based=True)
    test = TestSet(store=store, videos=videos, crop_index=[[i] for i in range(len(videos))], gt=gt,
                   video_labels=np.array([v.label for v in videos]), layout=layout, video_frames=frames)
    return train, test
