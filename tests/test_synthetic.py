"""Synthetic UCF-like dataset: official on-disk formats, determinism, and a non-trivial but learnable task."""

from pathlib import Path

import numpy as np
import pytest

from adplg.baselines import logistic_regression_baseline
from adplg.data.synthetic import (
    TEST_NORMAL_FOLDER,
    TRAIN_NORMAL_FOLDER,
    SyntheticDataset,
    generate_synthetic_ucf,
    load_ucf_video_table,
)
from adplg.errors import AdplgError
from adplg.evaluation import frame_metrics


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> SyntheticDataset:
    return generate_synthetic_ucf(tmp_path_factory.mktemp("syn0"))


def _read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _parse_list(lines: list[str], crops: int):
    """Group the crop lines of a list into videos: [(folder, video_name, [paths])], checking the crop naming."""
    assert len(lines) % crops == 0
    videos = []
    for i in range(0, len(lines), crops):
        group = [Path(p) for p in lines[i:i + crops]]
        assert group[0].name.endswith("_x264.npy") and "__" not in group[0].name
        name = group[0].name[: -len(".npy")]
        for k, p in enumerate(group[1:], start=1):
            assert p.name == f"{name}__{k}.npy"
            assert p.parent == group[0].parent
        videos.append((group[0].parent.name, name, group))
    return videos


def _parse_annotation(path: Path):
    rows = []
    for line in _read_lines(path):
        parts = line.split()
        assert len(parts) == 7, line
        video_path, nframes, cls = parts[0], int(parts[1]), parts[2]
        slots = [int(v) for v in parts[3:]]
        intervals = [(s, e) for s, e in zip(slots[::2], slots[1::2]) if s != -1]
        assert all(s == -1 for s in slots[2 * len(intervals):])
        rows.append((video_path, nframes, cls, intervals))
    return rows


def test_video_table():
    table = load_ucf_video_table()
    assert len(table) == 1900
    train = [r for r in table if r["split"] == "train"]
    test = [r for r in table if r["split"] == "test"]
    assert len(train) == 1610 and len(test) == 290
    assert sum(r["class"] != "Normal" for r in train) == 810
    assert sum(r["class"] != "Normal" for r in test) == 140
    assert all(r["intervals"] for r in test if r["class"] != "Normal")
    assert not any(r["intervals"] for r in table if r["class"] == "Normal" or r["split"] == "train")
    by_name = {r["video"]: r for r in table}
    assert by_name["Abuse028_x264"]["intervals"] == [(165, 240)]
    assert by_name["Abuse028_x264"]["num_frames"] == 1412
    assert len(by_name) == 1900


def test_lists_in_official_format(ds):
    assert ds.crops == 2 and ds.feature_dim == 64
    for list_path, split, n_abn, n_norm, normal_folder in [
        (ds.train_list, "train", 40, 40, TRAIN_NORMAL_FOLDER),
        (ds.test_list, "test", 20, 20, TEST_NORMAL_FOLDER),
    ]:
        lines = _read_lines(list_path)
        assert len(lines) == (n_abn + n_norm) * ds.crops
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in lines)
        videos = _parse_list(lines, ds.crops)
        abnormal = [v for v in videos if "Normal" not in v[1]]
        normal = [v for v in videos if "Normal" in v[1]]
        assert len(abnormal) == n_abn and len(normal) == n_norm
        assert videos[:n_abn] == abnormal, "abnormal videos must come first"
        assert [(f, n) for f, n, _ in abnormal] == sorted((f, n) for f, n, _ in abnormal)
        for folder, name, paths in abnormal:
            assert name.startswith(folder) and paths[0].parent.parent.name == split
        for folder, name, paths in normal:
            assert folder == normal_folder and paths[0].parent.parent.name == split


def test_annotation_matches_test_list_and_features(ds):
    table = {r["video"]: r for r in load_ucf_video_table()}
    videos = _parse_list(_read_lines(ds.test_list), ds.crops)
    rows = _parse_annotation(ds.annotations)
    assert len(rows) == len(videos)
    for (folder, name, paths), (video_path, nframes, cls, intervals) in zip(videos, rows):
        assert video_path == f"{folder}/{name}.mp4"
        real = table[name]
        assert real["split"] == "test" and real["class"] == cls
        arrays = [np.load(p) for p in paths]
        t_len = arrays[0].shape[0]
        assert nframes == 16 * t_len
        assert t_len == min(real["num_frames"] // 16, 400)
        for a in arrays:
            assert a.dtype == np.float32 and a.shape == (t_len, ds.feature_dim)
        assert not np.array_equal(arrays[0], arrays[1])
        assert np.abs(arrays[0] - arrays[1]).mean() < 0.3  # crops: same signal, small independent noise
        if cls == "Normal":
            assert folder == TEST_NORMAL_FOLDER and intervals == []
        else:
            assert 1 <= len(intervals) <= 2
            assert all(0 <= s < e <= nframes for s, e in intervals)
            if real["num_frames"] // 16 <= 400:  # not capped: the real intervals (clipped to 16*T)
                assert intervals == [(s, min(e, nframes)) for s, e in real["intervals"]]


def test_train_videos_are_real_and_weakly_labelled(ds):
    table = {r["video"]: r for r in load_ucf_video_table()}
    for folder, name, paths in _parse_list(_read_lines(ds.train_list), ds.crops):
        real = table[name]
        assert real["split"] == "train"
        assert (folder == TRAIN_NORMAL_FOLDER) == (real["class"] == "Normal")
        assert np.load(paths[0]).shape[0] == min(real["num_frames"] // 16, 400)
    assert not any("train" in line.split()[0] for line in _read_lines(ds.annotations))


def test_deterministic_for_a_seed(ds, tmp_path):
    again = generate_synthetic_ucf(tmp_path / "again")
    other = generate_synthetic_ucf(tmp_path / "other", seed=1)
    strip = lambda p, root: [line.replace(str(root), "") for line in _read_lines(p)]  # noqa: E731
    assert strip(again.train_list, again.root) == strip(ds.train_list, ds.root)
    assert strip(again.test_list, again.root) == strip(ds.test_list, ds.root)
    assert again.annotations.read_text() == ds.annotations.read_text()
    for a, b in zip(_read_lines(again.train_list)[:6], _read_lines(ds.train_list)[:6]):
        np.testing.assert_array_equal(np.load(a), np.load(b))
    assert strip(other.test_list, other.root) != strip(ds.test_list, ds.root)


def test_capping_scales_intervals(tmp_path):
    small = generate_synthetic_ucf(tmp_path, num_train_normal=2, num_train_abnormal=2, num_test_normal=3,
                                   num_test_abnormal=30, feature_dim=16, crops=1, max_snippets=20, seed=3)
    videos = _parse_list(_read_lines(small.test_list), 1)
    rows = _parse_annotation(small.annotations)
    for (_, _, paths), (_, nframes, cls, intervals) in zip(videos, rows):
        t_len = np.load(paths[0]).shape[0]
        assert t_len <= 20 and nframes == 16 * t_len
        assert np.load(paths[0]).shape[1] == 16
        if cls != "Normal":
            assert intervals and all(0 <= s < e <= nframes for s, e in intervals)


def test_bad_arguments(tmp_path):
    with pytest.raises(AdplgError, match="only 140"):
        generate_synthetic_ucf(tmp_path, num_test_abnormal=141)
    with pytest.raises(AdplgError, match="crops"):
        generate_synthetic_ucf(tmp_path, crops=0)


def _frame_gt(annotation: Path):
    gts, labels = [], []
    for _, nframes, cls, intervals in _parse_annotation(annotation):
        g = np.zeros(nframes, dtype=np.int64)
        for s, e in intervals:
            g[s:e] = 1
        gts.append(g)
        labels.append(int(cls != "Normal"))
    return gts, np.array(labels)


def test_logistic_baseline_is_above_chance_but_far_from_perfect(ds):
    train_paths = _read_lines(ds.train_list)
    test_paths = _read_lines(ds.test_list)
    train_feats = [np.load(p) for p in train_paths]  # every crop is a training sample, as in the official loader
    train_labels = np.array([0 if "Normal" in p else 1 for p in train_paths])
    scores = logistic_regression_baseline(train_feats, train_labels, [np.load(p) for p in test_paths])
    c = ds.crops
    video_scores = [np.mean(scores[i:i + c], axis=0) for i in range(0, len(scores), c)]  # crop averaging
    gts, labels = _frame_gt(ds.annotations)
    frame_scores = np.concatenate([np.repeat(s, 16) for s in video_scores])
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in gts])])
    m = frame_metrics(np.concatenate(gts), frame_scores, offsets, labels)
    assert 0.6 < m["auc"] < 0.9, m
    assert 0.5 < m["auc_abnormal"] < 0.95, m


# ------------------------------------------------------------------------- XD-like and SHT-like layouts (issue 29)
LIKE_SIZES = {"num_train_normal": 3, "num_train_abnormal": 3, "num_test_normal": 2, "num_test_abnormal": 2,
              "feature_dim": 8, "max_snippets": 30, "seed": 2}


def test_xd_and_sht_layouts_hold_the_same_videos_in_their_official_formats(tmp_path):
    from adplg.config import build_config
    from adplg.data.datasets import build_test_set, build_train_set
    from adplg.data.synthetic import SYNTHETIC_DATA_SETTINGS

    sets = {like: generate_synthetic_ucf(tmp_path / like, crops=3, relative_paths=True, like=like, **LIKE_SIZES)
            for like in ("ucf", "xd", "sht")}
    xd, sht = sets["xd"], sets["sht"]
    xd_lines = _read_lines(xd.train_list)
    assert all(p.startswith("train/") and p.endswith(("__0.npy", "__1.npy", "__2.npy")) for p in xd_lines)
    assert sum("_label_A__" in p for p in xd_lines) == 9 and xd.gt_file is None
    annotated = [line.split() for line in _read_lines(xd.annotations)]  # abnormal test videos only
    assert len(annotated) == 2 and all("_label_B" in r[0] or "_label_G" in r[0] for r in annotated)
    train_rows = [line.split() for line in _read_lines(sht.train_list)]
    assert all(len(r) == 2 and r[1] in ("1.0", "0.0") for r in train_rows)
    assert [r[0] for r in train_rows] == sorted(r[0] for r in train_rows)  # name-sorted, as the official list
    assert all(len(line.split()) == 1 for line in _read_lines(sht.test_list)) and sht.annotations is None
    gt = np.load(sht.gt_file)
    test_lengths = [np.load(sht.root / p).shape[0] for p in _read_lines(sht.test_list)[::3]]
    assert gt.shape == (16 * sum(test_lengths),) and set(np.unique(gt)) == {0, 1}
    # the same features in every layout: only names and files differ
    ucf_first = np.load(sets["ucf"].root / _read_lines(sets["ucf"].test_list)[0])
    for like in ("xd", "sht"):
        np.testing.assert_array_equal(np.load(sets[like].root / _read_lines(sets[like].test_list)[0]), ucf_first)
    # each layout reads back with its data settings: the same frame GT and video labels
    built = {}
    for like, d in sets.items():
        overrides = [f"data.{k}={'null' if v is None else v}" for k, v in SYNTHETIC_DATA_SETTINGS[like].items()]
        cfg = build_config("demo-cpu-small", overrides=[*overrides, f"data.list_dir={d.root}", "data.feature_dim=8",
                                                        "data.train_crops=3", "data.test_crops=3",
                                                        "train.batch_size=2"])
        train, test = build_train_set(cfg, progress=False), build_test_set(cfg, progress=False)
        built[like] = (test.gt.labels, test.video_labels, int(train.labels.sum()))
    for like in ("xd", "sht"):
        np.testing.assert_array_equal(built[like][0], built["ucf"][0])
        np.testing.assert_array_equal(built[like][1], built["ucf"][1])
        assert built[like][2] == built["ucf"][2] == 9
    with pytest.raises(AdplgError, match="like must be one of ucf, xd, sht"):
        generate_synthetic_ucf(tmp_path / "bad", like="shanghai")
