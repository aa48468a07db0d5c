"""Training and test sets assembled from the config: lists -> validated features -> tensors / frame GT.

``build_train_set`` pools every training crop once to ``num_segments`` (the official rule, deterministic), so a
training step only gathers indices from one resident tensor. ``build_test_set`` keeps full-length crops and builds
the frame-level ground truth from the annotations and the actual feature lengths (or loads an official GT file),
after the checks ``adplg doctor`` runs (``gt_checks.check_test_gt``): their errors raise, their warnings are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from adplg.config import Config, DataConfig
from adplg.data.features import FeatureStore
from adplg.data.gt import FrameGT, SnippetLayout
from adplg.data.gt_checks import GTVideo, check_test_gt
from adplg.data.lists import CropItem, VideoItem, group_videos, missing_root_hint, read_list
from adplg.errors import AdplgError

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TrainSet:
    """Pooled training crops. ``features[i]`` is crop ``items[i]`` resampled to [T, D]."""

    features: Tensor  # [N, T, D] float32
    labels: Tensor  # [N] long, 0 normal / 1 abnormal
    key_ids: Tensor  # [N] long, pseudo-label history key id (-1 for normal crops)
    keys: list[str]  # key id -> key string
    items: list[CropItem]

    @property
    def normal_index(self) -> Tensor:
        """``[N0]`` int64: the indices of the normal (label 0) training crops."""
        return torch.nonzero(self.labels == 0).flatten()

    @property
    def abnormal_index(self) -> Tensor:
        """``[N1]`` int64: the indices of the abnormal (label 1) training crops."""
        return torch.nonzero(self.labels == 1).flatten()


@dataclass(kw_only=True)
class TestSet:
    """Full-length test crops grouped by video, with the frame-level ground truth in the same video order."""

    store: FeatureStore
    videos: list[VideoItem]
    crop_index: list[list[int]]  # per video, the store indices of its crops
    gt: FrameGT
    video_labels: np.ndarray  # [V] 0/1
    layout: SnippetLayout
    video_frames: list[int] | None = None  # raw frame counts (needed by the "spread" layout)
    video_classes: list[str] = field(default_factory=list)

    def crops(self, v: int) -> np.ndarray:
        """[C, T, D] float32: all crops of video ``v``."""
        return np.stack([np.asarray(self.store[i]) for i in self.crop_index[v]])


def history_key(item: CropItem, mode: str) -> str:
    """The pseudo-label history key: the dataset's official key (``auto``), the video, or the crop file."""
    if mode == "auto":
        return item.history_key
    if mode == "video":
        return item.video
    return f"{item.path}#{item.array_index}" if item.array_index is not None else str(item.path)


def _read(cfg: DataConfig, which: str) -> tuple[list[CropItem], Callable[[CropItem], str]]:
    """The crop items of the ``which`` ("train"/"test") list, and the hint ``FeatureStore.load`` gives when many of
    their files are missing (it names ``data.train_root`` / ``data.test_root``)."""
    list_file = cfg.resolve(cfg.train_list if which == "train" else cfg.test_list)
    root = cfg.train_features if which == "train" else cfg.test_features
    root_key = f"data.{which}_root"
    items = read_list(list_file, cfg.format, root=root, root_key=root_key)
    shared = cfg.feature_root is not None and root == cfg.feature_root
    note = ("(data.feature_root, which --feature_root sets, is the root of both lists: separate train and test "
            "folders need data.train_root and data.test_root)") if shared else ""
    return items, partial(missing_root_hint, items=items, list_file=list_file, root=root, root_key=root_key,
                          fmt=cfg.format, note=note)


def build_train_set(cfg: Config, progress: bool = True) -> TrainSet:
    """The training set of ``cfg.data``: its list read, features loaded and checked, crops resampled."""
    data = cfg.data
    items, hint = _read(data, "train")
    if any(item.label not in (0, 1) for item in items):
        raise AdplgError(f"training list {data.resolve(data.train_list)} has crops without a 0/1 video label")
    store = FeatureStore.load(items, feature_dim=data.feature_dim, crops_per_video=data.train_crops,
                              mmap=data.mmap, progress=progress, context="training features", missing_hint=hint)
    return train_set_from_store(cfg, store)


def train_set_from_store(cfg: Config, store: FeatureStore) -> TrainSet:
    """Pool every crop of ``store`` once and assign pseudo-label history keys."""
    data, items = cfg.data, store.items
    pooled = store.pooled(data.num_segments, mode=data.resample)
    labels = torch.tensor([item.label for item in items], dtype=torch.long)
    keys: list[str] = []
    key_of: dict[str, int] = {}
    key_ids = torch.full((len(items),), -1, dtype=torch.long)
    for i, item in enumerate(items):
        if item.label == 1:
            key = history_key(item, cfg.plg.key)
            key_ids[i] = key_of.setdefault(key, len(keys))
            if key_ids[i] == len(keys):
                keys.append(key)
    counts = {"normal": int((labels == 0).sum()), "abnormal": int((labels == 1).sum())}
    for name, count in counts.items():
        if count < cfg.train.batch_size:
            fit = min(counts.values())  # a batch size both halves can fill
            fix = (f"set train.batch_size={fit} (or lower), or add more {name} videos to the list" if fit else
                   f"add {name} videos to the list (training needs both labels)")
            raise AdplgError(f"training list {data.resolve(data.train_list)}: {count} {name} crops, but "
                             f"train.batch_size={cfg.train.batch_size} {name} crops are drawn per step: {fix}")
    return TrainSet(features=torch.from_numpy(np.ascontiguousarray(pooled)), labels=labels, key_ids=key_ids,
                    keys=keys, items=list(items))


def snippet_layout(data: DataConfig) -> SnippetLayout:
    """The snippet -> frame layout of ``data.layout``."""
    return SnippetLayout(kind=data.layout.kind, frames_per_snippet=data.layout.frames_per_snippet,
                         window=data.layout.window)


def build_test_set(cfg: Config, progress: bool = True) -> TestSet:
    """The test crops (validated like the training ones) and their frame GT.

    Raises:
        DataValidationError: every GT problem ``adplg doctor`` calls an error (an abnormal video without anomaly
            intervals, an interval beyond a video's end, a GT file of the wrong length, a GT without abnormal
            frames, ...), all at once, before anything is scored. The doctor's warnings (annotated videos missing
            from the list, frame counts that disagree with T) are logged once."""
    data = cfg.data
    items, hint = _read(data, "test")
    store = FeatureStore.load(items, feature_dim=data.feature_dim, crops_per_video=data.test_crops,
                              mmap=data.mmap, progress=progress, context="test features", missing_hint=hint)
    videos = group_videos(items)
    position = {id(item): i for i, item in enumerate(items)}
    crop_index = [[position[id(c)] for c in video.crops] for video in videos]
    num_snippets = [int(store.lengths[idx[0]]) for idx in crop_index]  # crops of a video have equal lengths (checked)
    layout = snippet_layout(data)
    check = check_test_gt([GTVideo(name=v.name, label=v.label, snippets=t, path=str(v.crops[0].path))
                           for v, t in zip(videos, num_snippets)],
                          layout, gt_file=data.resolve(data.gt_file), annotations=data.resolve(data.annotations),
                          annotation_format=data.annotation_format, list_file=data.resolve(data.test_list))
    warnings = check.warning_text()
    if warnings:
        log.warning("%s", warnings)
    check.raise_errors()
    if check.gt is None:  # no error, but nothing built: the checks were skipped (see the notes)
        raise AdplgError(f"cannot build the test set's frame GT: {'; '.join(check.notes) or 'no GT source'}")
    gt = check.gt
    labels = np.array([v.label for v in videos])
    from_gt = np.array([int(gt.labels[gt.offsets[i]:gt.offsets[i + 1]].any()) for i in range(len(videos))])
    labels = np.where(labels < 0, from_gt, labels)  # SHT test lists carry no label column
    # XD-Violence names carry their classes ("..._label_B2-G-0"); they enable per-class AP
    classes = [v.name.split("_label_", 1)[1] if "_label_" in v.name else "" for v in videos]
    return TestSet(store=store, videos=videos, crop_index=crop_index, gt=gt, video_labels=labels, layout=layout,
                   video_classes=classes if all(classes) else [])


def data_manifest(cfg: Config, train: TrainSet | None, test: TestSet | None) -> dict:
    """What data a run used: list files (size, sha256), counts, shapes. Saved with every run and checkpoint."""
    import hashlib

    def describe(path: Path | None) -> dict | None:
        if path is None or not Path(path).is_file():
            return None
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": digest}

    data = cfg.data
    out: dict = {"train_list": describe(data.resolve(data.train_list)),
                 "test_list": describe(data.resolve(data.test_list)),
                 "annotations": describe(data.resolve(data.annotations)),
                 "gt_file": describe(data.resolve(data.gt_file)),
                 "train_root": data.train_features, "test_root": data.test_features}
    if train is not None:
        out["train"] = {"crops": len(train.items), "normal_crops": int((train.labels == 0).sum()),
                        "abnormal_crops": int((train.labels == 1).sum()), "history_keys": len(train.keys),
                        "pooled_shape": list(train.features.shape)}
    if test is not None:
        out["test"] = {"videos": len(test.videos), "crops": len(test.store),
                       "abnormal_videos": int(test.video_labels.sum()), "gt_frames": int(len(test.gt.labels)),
                       "gt_abnormal_frames": int(test.gt.labels.sum())}
    return out
