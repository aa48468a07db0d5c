"""``adplg doctor``: check a feature folder against its list files and annotations, and report every problem at once.

``diagnose(cfg)`` walks the train and/or test split the way ``build_train_set`` / ``build_test_set`` would read them,
but never stops at the first problem: it opens every crop file memory-mapped with the same per-file checks as
``FeatureStore.load`` (``check_feature_file``: missing, truncated, unreadable, wrong ndim / dtype / feature dimension,
NaN/Inf), checks the crops of every video (``check_video_crops``: crop count, equal T), the snippet counts (T == 0,
T > ``model.max_len``, unusually short videos), and for the test split the frame-level GT with
``gt_checks.check_test_gt``,
the very checks ``build_test_set`` runs before training or testing (a GT file's length against the snippet layout,
or the annotations against the list and the feature lengths). The report and its rendering are in
:mod:`adplg.doctor.report`.

``diagnose_extraction(folder)`` checks a folder written by ``adplg extract`` instead (its format:
:mod:`adplg.data.extraction`, recognised by ``is_extraction_folder`` there): the manifest and every
``meta/<video>.json`` record can be read (as that module reads them); every recorded crop file passes the same
``check_feature_file`` checks as above as a ``[T, D]`` float array with ``D`` = the manifest's ``feature_dim``, and
``T`` = the record's ``snippets``; crops of a video agree (``check_video_crops``, count = the manifest's ``crops``);
crop files without a meta record (half-extracted videos); ``features.list`` present and up to date (a warning).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adplg.config import Config, DataConfig
from adplg.conventions import split_crop_suffix
from adplg.data.datasets import snippet_layout
from adplg.data.extraction import (
    META_DIR,
    feature_list_path,
    manifest_path,
    meta_path,
    read_manifest,
    read_video_record,
    record_crop_files,
    video_record_paths,
)
from adplg.data.features import check_feature_file, check_video_crops
from adplg.data.gt_checks import WARNING, GTVideo, check_test_gt
from adplg.data.lists import CropItem, group_videos, read_list
from adplg.doctor.report import EXTRACTION, STAT_ROWS_PER_FILE, UNREADABLE_KINDS, DoctorReport, SplitReport
from adplg.errors import AdplgError, DataValidationError

__all__ = ["diagnose", "diagnose_extraction"]

SPLITS = ("train", "test")
SHORT_OUTLIER_DIVISOR = 20  # a video is an outlier when T < median(T) / 20


# -------------------------------------------------------------------------------------------------------- diagnose
def diagnose(cfg: Config, splits: Sequence[str] = SPLITS, progress: bool = True) -> DoctorReport:
    """Check the given splits of ``cfg.data`` and return one report with every problem found."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise AdplgError(f"doctor: unknown split(s) {unknown or list(splits)}; expected 'train' and/or 'test'")
    start = time.perf_counter()
    reports = [_diagnose_split(cfg, split, progress) for split in splits]
    return DoctorReport(config_name=cfg.name, list_dir=str(cfg.data.list_dir), feature_dim=cfg.data.feature_dim,
                        splits=reports, seconds=time.perf_counter() - start)


@dataclass(kw_only=True)
class _Video:
    """A video of the list: its name, label, and the positions of its crops among the list's items."""

    name: str
    label: int
    crops: list[int]


def _diagnose_split(cfg: Config, split: str, progress: bool) -> SplitReport:
    data = cfg.data
    list_file = data.resolve(data.train_list if split == "train" else data.test_list)
    root = data.train_features if split == "train" else data.test_features
    report = SplitReport(split=split, list_file=str(list_file), feature_root=root,
                         expected_crops=data.train_crops if split == "train" else data.test_crops)
    assert list_file is not None  # the list names are strings, so resolve() gives a path
    items = _read_items(list_file, data.format, root, report)
    if not items:
        return report
    report.list_ok = True
    videos = _group_videos(items, report)
    _check_labels(cfg, split, items, videos, report)
    lengths = _check_files(items, data.feature_dim, report, progress, desc=f"doctor: {split} features")
    for problem in check_video_crops(items, lengths, report.expected_crops):
        report.add(problem.kind, problem.message)
    video_lengths = _video_lengths(videos, lengths)
    _length_statistics(video_lengths, lengths, report)
    _check_lengths(cfg, split, videos, items, video_lengths, report)
    if split == "test":
        _check_ground_truth(data, videos, items, video_lengths, report)
    return report


def _read_items(list_file: Path, fmt: str, root: str | None, report: SplitReport) -> list[CropItem]:
    """The crop items of a list; every list problem is recorded (none raised)."""
    try:
        items = read_list(list_file, fmt, root=root)
    except DataValidationError as exc:
        for message in exc.problems:
            report.add("list", message)
        return []
    except AdplgError as exc:
        report.add("list", str(exc))
        return []
    if not items:
        report.add("list", f"list file {list_file}: no entries (expected at least one crop file, got 0)")
    return items


def _group_videos(items: list[CropItem], report: SplitReport) -> list[_Video]:
    """Videos in list order (crops grouped by name); ``group_videos``' own checks (contiguous crops, one label per
    video) are recorded as list problems."""
    try:
        group_videos(items)
    except DataValidationError as exc:
        for message in exc.problems:
            report.add("list", message)
    by_name: dict[str, _Video] = {}
    for i, item in enumerate(items):
        by_name.setdefault(item.video, _Video(name=item.video, label=item.label, crops=[])).crops.append(i)
    videos = list(by_name.values())
    report.crops, report.videos = len(items), len(videos)
    report.abnormal_videos = sum(v.label == 1 for v in videos)
    report.normal_videos = sum(v.label == 0 for v in videos)
    return videos


def _check_labels(cfg: Config, split: str, items: list[CropItem], videos: list[_Video], report: SplitReport) -> None:
    """Training needs a 0/1 label on every crop and at least ``train.batch_size`` crops of each label."""
    if split != "train":
        return
    unlabeled = [v for v in videos if v.label not in (0, 1)]
    for video in unlabeled:
        report.add("label", f"{items[video.crops[0]].path}: training video {video.name!r} has no 0/1 label: "
                            f"expected 0 or 1, got {video.label}")
    batch = cfg.train.batch_size
    for name, label in (("normal", 0), ("abnormal", 1)):
        count = sum(item.label == label for item in items)
        if count < batch:
            report.add("batch_size", f"list file {report.list_file}: {name} crops: expected at least "
                                     f"train.batch_size = {batch} (drawn per step), got {count}")


# ----------------------------------------------------------------------------------------------------- feature files
class _ValueSampler:
    """Running mean/std (float64) of a few evenly spaced rows of every valid file."""

    def __init__(self, rows_per_file: int = STAT_ROWS_PER_FILE):
        self.rows_per_file = rows_per_file
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, arr: np.ndarray) -> None:
        length = arr.shape[0]
        if length == 0:
            return
        rows = np.unique(np.linspace(0, length - 1, min(length, self.rows_per_file)).astype(np.int64))
        values = np.asarray(arr[rows], dtype=np.float64).reshape(-1)
        self.count += values.size
        self.total += float(values.sum())
        self.total_sq += float(np.square(values).sum())

    def fill(self, report: SplitReport) -> None:
        report.value_sample_size = self.count
        if self.count:
            mean = self.total / self.count
            report.value_mean = mean
            report.value_std = float(np.sqrt(max(self.total_sq / self.count - mean * mean, 0.0)))


def _check_files(items: list[CropItem], feature_dim: int | None, report: SplitReport, progress: bool,
                 desc: str, note_root: bool = True) -> list[int | None]:
    """Check every distinct file once (memory-mapped); return T of every item (None when its file is unusable)."""
    by_file: dict[Path, list[int]] = {}
    for i, item in enumerate(items):
        by_file.setdefault(Path(item.path), []).append(i)
    lengths: list[int | None] = [None] * len(items)
    sampler = _ValueSampler()
    for path, idxs in tqdm(by_file.items(), total=len(by_file), desc=desc, unit="file", disable=not progress,
                           leave=False):
        check = check_feature_file(path, [items[i] for i in idxs], feature_dim, mmap=True)
        _count_file(check, report)
        for problem in check.problems:
            report.add(problem.kind, problem.message)
        for i in idxs:
            lengths[i] = check.num_snippets
        if check.ok:
            assert check.array is not None  # every file that passed its checks is open
            sampler.add(check.array)
        del check  # drop the memory map before opening the next file
    report.files = len(by_file)
    sampler.fill(report)
    if note_root:
        _note_missing_root(items, report)
    return lengths


def _note_missing_root(items: list[CropItem], report: SplitReport) -> None:
    """When most files are missing the feature root is the likely culprit: say how the list paths were mapped."""
    if report.files_missing == 0 or report.files_missing < report.files / 2:
        return
    how = (f"re-rooted onto {report.feature_root} after dropping the folder prefix common to all list paths"
           if report.feature_root else "used as written in the list")
    report.notes.append(f"{report.files_missing} of {report.files} files are missing: check the feature root "
                        f"(DATA / --feature_root, or data.train_root / data.test_root); list paths are {how}, "
                        f"e.g. {items[0].path}")


def _count_file(check, report: SplitReport) -> None:
    kinds = {p.kind for p in check.problems}
    report.files_missing += "missing" in kinds
    report.files_found += "missing" not in kinds
    report.files_unreadable += bool(kinds & UNREADABLE_KINDS)
    if check.nonfinite:
        report.files_nonfinite += 1
        report.nonfinite_values += check.nonfinite


# ------------------------------------------------------------------------------------------------------ lengths
def _video_lengths(videos: list[_Video], lengths: list[int | None]) -> dict[str, int]:
    """T of every video with at least one readable crop (its first readable crop's T)."""
    out: dict[str, int] = {}
    for video in videos:
        known = [n for n in (lengths[i] for i in video.crops) if n is not None]
        if known:
            out[video.name] = known[0]
    return out


def _length_statistics(video_lengths: dict[str, int], lengths: list[int | None], report: SplitReport) -> None:
    if video_lengths:
        values = np.array(list(video_lengths.values()), dtype=np.int64)
        report.length_min, report.length_max = int(values.min()), int(values.max())
        report.length_median = float(np.median(values))
    report.total_snippets = int(sum(n for n in lengths if n is not None))


def _check_lengths(cfg: Config, split: str, videos: list[_Video], items: list[CropItem],
                   video_lengths: dict[str, int], report: SplitReport) -> None:
    """T > model.max_len (a warning: testing and scoring run such a video in overlapping windows of max_len
    snippets, training pools every crop to data.num_segments; a causal model has no such limit), and
    T < median / SHORT_OUTLIER_DIVISOR (a warning)."""
    if not video_lengths:
        return
    max_len = None if cfg.model.causal else cfg.model.max_len
    median = float(np.median(list(video_lengths.values())))
    short = median / SHORT_OUTLIER_DIVISOR
    limit = (f"T > model.max_len = {max_len} is a warning (scored in overlapping windows of {max_len})"
             if max_len is not None else "model.causal: any T is scored in one pass (no model.max_len limit)")
    report.rules.append(f"{limit}; T < median / {SHORT_OUTLIER_DIVISOR} = {median:g} / {SHORT_OUTLIER_DIVISOR} = "
                        f"{short:.1f} is an outlier (warning); T per video = T of its first readable crop")
    for video in videos:
        length = video_lengths.get(video.name)
        where = f"{items[video.crops[0]].path}: video {video.name!r}"
        if length is None or length == 0:
            continue  # unreadable, or already reported as "no snippets"
        if max_len is not None and length > max_len:
            report.add("too_long", f"{where}: T longer than model.max_len: expected T <= {max_len}, got {length} "
                                   f"(scored in overlapping windows of {max_len} snippets)", WARNING)
        if length < short:
            report.add("short_outlier", f"{where}: unusually short: expected T >= {short:.1f} (median {median:g} / "
                                        f"{SHORT_OUTLIER_DIVISOR}), got {length}")


# ------------------------------------------------------------------------------------------------- ground truth
def _check_ground_truth(data: DataConfig, videos: list[_Video], items: list[CropItem],
                        video_lengths: dict[str, int], report: SplitReport) -> None:
    """The test split's frame GT, checked by ``check_test_gt``: the very checks ``build_test_set`` runs before
    ``adplg train`` / ``adplg test`` compute anything (a GT file wins over annotations)."""
    check = check_test_gt(
        [GTVideo(name=v.name, label=v.label, snippets=video_lengths.get(v.name),
                 path=str(items[v.crops[0]].path)) for v in videos],
        snippet_layout(data), gt_file=data.resolve(data.gt_file), annotations=data.resolve(data.annotations),
        annotation_format=data.annotation_format, list_file=report.list_file)
    report.gt_source, report.gt_frames = check.source, check.frames
    report.rules += check.rules
    report.notes += check.notes
    for problem in check.problems:
        # A GT with a single class is a well-formed file (a normal-only set can still be inspected or scored with
        # `adplg score`), so the doctor warns; `adplg train` / `adplg test` refuse it: frame AUC/AP are undefined.
        severity = WARNING if problem.kind == "one_class" else problem.severity
        report.add(problem.kind, problem.message, severity)


# --------------------------------------------------------------------------------------------- extraction folders
def _read_manifest(folder: Path, report: SplitReport) -> dict:
    """The folder's manifest (``{}`` after recording why there is none usable); keys of the wrong type are
    reported and dropped."""
    path = manifest_path(folder)
    try:
        manifest = read_manifest(folder)
    except AdplgError as exc:
        report.add("manifest", str(exc))
        return {}
    if manifest is None:
        report.add("manifest", f"{path}: not found (expected the manifest `adplg extract` writes first; the "
                               f"feature dimension and crop count are then taken from the meta records)")
        return {}
    report.list_ok = True
    for key, kind in (("feature_dim", int), ("crops", int), ("naming", str)):
        if not isinstance(manifest.get(key), kind):
            report.add("manifest", f"{path}: {key}: expected {'an integer' if kind is int else 'a string'}, got "
                                   f"{manifest.get(key)!r}")
            manifest.pop(key, None)
    return manifest


def _record_crop_files(folder: Path, video: str, report: SplitReport) -> tuple[dict, list[str]] | None:
    """``(record, its crop file names)`` of ``meta/<video>.json``, or None after recording what is wrong with it."""
    try:
        record = read_video_record(folder, video)
        files = record_crop_files(meta_path(folder, video), record)
        assert record is not None  # record_crop_files raised AdplgError for no record
        return record, files
    except AdplgError as exc:
        report.add("meta", str(exc))
        return None


def _orphan_crops(folder: Path, known: set[str], naming: str, report: SplitReport) -> None:
    """``.npy`` files in ``folder`` that no meta record lists: crops of videos whose extraction did not finish."""
    by_video: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.npy")):
        if path.name not in known:
            by_video.setdefault(_video_of(path, naming), []).append(path.name)
    for video, names in by_video.items():
        report.add("orphan", f"{folder / names[0]}: video {video!r} has {len(names)} crop file(s) but no meta "
                             f"record {meta_path(folder, video)} (expected one per finished video: a "
                             f"half-extracted video; re-run `adplg extract` with the same --out to finish it, or "
                             f"delete its files)")


def _check_feature_list(folder: Path, finished: set[Path], naming: str, report: SplitReport) -> None:
    """``features.list`` lists exactly the crop files of the finished videos (a warning: it is rewritten at the end
    of every ``adplg extract`` run)."""
    path = feature_list_path(folder)
    if not path.is_file():
        report.add("feature_list", f"{path}: not found (expected one line per crop file of a finished video; "
                                   f"re-run `adplg extract` with the same --out to rewrite it)")
        return
    try:
        listed = {Path(item.path) for item in read_list(path, naming)}
    except AdplgError as exc:
        report.add("feature_list", f"{path}: cannot be read: {exc}")
        return
    stale, absent = sorted(listed - finished), sorted(finished - listed)
    if stale or absent:
        example = stale[0] if stale else absent[0]
        report.add("feature_list", f"{path}: out of date: expected the {len(finished)} crop files of the finished "
                                   f"videos, got {len(stale)} listed without a finished video and {len(absent)} "
                                   f"finished but not listed (e.g. {example}); re-run `adplg extract` with the same "
                                   f"--out to rewrite it")


def diagnose_extraction(folder: str | Path, progress: bool = True) -> DoctorReport:
    """Check a folder written by ``adplg extract`` (see the module docstring) and return one report."""
    folder = Path(folder)
    start = time.perf_counter()
    report = SplitReport(split=EXTRACTION, list_file=str(manifest_path(folder)), feature_root=str(folder))
    manifest = _read_manifest(folder, report)
    naming = manifest.get("naming", "ucf")
    feature_dim = manifest.get("feature_dim")
    report.expected_crops = manifest.get("crops")
    items: list[CropItem] = []
    snippets: dict[str, int] = {}
    known: set[str] = set()
    meta_files = video_record_paths(folder)
    for meta in meta_files:
        found = _record_crop_files(folder, meta.stem, report)
        if found is None:  # its crop files are not orphans: the record is reported instead
            known.update(p.name for p in folder.glob("*.npy") if _video_of(p, naming) == meta.stem)
            continue
        record, files = found
        known.update(files)
        snippets[meta.stem] = record["snippets"]
        shape = record.get("feature_shape")
        if feature_dim is None and isinstance(shape, list) and len(shape) == 2:
            feature_dim = int(shape[1])  # no manifest: the meta records say what D should be
        items += [CropItem(path=folder / name, video=meta.stem, crop=k, label=-1, history_key=meta.stem)
                  for k, name in enumerate(files)]
    videos = [_Video(name=name, label=-1, crops=[i for i, it in enumerate(items) if it.video == name])
              for name in snippets]
    report.crops, report.videos = len(items), len(videos)
    lengths = _check_files(items, feature_dim, report, progress, desc="doctor: extracted features", note_root=False)
    for problem in check_video_crops(items, lengths, report.expected_crops):
        report.add(problem.kind, problem.message)
    for item, length in zip(items, lengths, strict=True):
        if length is not None and length != snippets[item.video]:
            report.add("meta_mismatch", f"{item.path}: T disagrees with its meta record "
                                        f"{meta_path(folder, item.video)}: expected snippets = "
                                        f"{snippets[item.video]}, got T = {length}")
    _length_statistics(_video_lengths(videos, lengths), lengths, report)
    _orphan_crops(folder, known, naming, report)
    if meta_files or feature_list_path(folder).is_file():
        _check_feature_list(folder, {Path(it.path) for it in items}, naming, report)
    if not meta_files:
        report.notes.append(f"no finished video: {folder / META_DIR} holds no meta record")
    name = f"{manifest.get('backbone', 'unknown backbone')}, {report.expected_crops or '?'} crop(s), naming {naming}"
    return DoctorReport(config_name=name, list_dir=str(folder), feature_dim=feature_dim or 0, splits=[report],
                        seconds=time.perf_counter() - start, kind=EXTRACTION)


def _video_of(path: Path, naming: str) -> str:
    """The video a crop file belongs to, by its name (``Abuse001_x264__3.npy`` -> ``Abuse001_x264``)."""
    return split_crop_suffix(path.stem, naming)[0]


