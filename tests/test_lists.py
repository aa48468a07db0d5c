"""List readers: the official ADPLG lists (read in place from ../shared) and the csv/folder formats on tiny files."""


import numpy as np
import pytest

from adplg.data import (
    LIST_FORMATS,
    CropItem,
    group_videos,
    parse_label,
    read_list,
    split_crop_suffix,
)
from adplg.errors import AdplgError, DataValidationError

realdata = pytest.mark.realdata


def _check_video_structure(videos, crops, crop_ids):
    for v in videos:
        assert len(v.crops) == crops
        assert [c.crop for c in v.crops] == list(crop_ids)
        assert {c.video for c in v.crops} == {v.name}
        assert {c.label for c in v.crops} == {v.label}


# ----------------------------------------------------------------------------------------------------- official lists
@realdata
def test_ucf_train_list(official_lists, tmp_path):
    root = tmp_path / "ucf_feats"
    items = read_list(official_lists / "UCF_Train.list", "ucf", root=root)
    assert len(items) == 16100
    videos = group_videos(items)
    assert len(videos) == 1610
    _check_video_structure(videos, 10, range(10))
    labels = np.array([it.label for it in items])
    assert labels[:8100].all() and not labels[8100:].any()  # 8,100 abnormal crops first
    assert sum(v.label for v in videos) == 810

    first = videos[0]
    assert first.name == "Abuse001_x264"
    assert {c.history_key for c in first.crops} == {"Abuse001"}  # the 10 crops share one history
    assert first.crops[0].path == root / "Abuse" / "Abuse001_x264.npy"  # crop 0 has no suffix
    assert first.crops[3].path == root / "Abuse" / "Abuse001_x264__3.npy"
    last = videos[-1]
    assert last.name == "Normal_Videos950_x264" and last.label == 0
    assert last.crops[9].path == root / "Training_Normal_Videos_Anomaly" / "Normal_Videos950_x264__9.npy"
    assert last.crops[9].history_key == "Normal_Videos950"
    assert len({it.history_key for it in items}) == 1610
    assert all(it.array_index is None for it in items)


@realdata
def test_ucf_paths_as_written_and_explicit_prefix(official_lists, tmp_path):
    items = read_list(official_lists / "UCF_Test.list", "ucf")
    assert str(items[0].path) == (
        "/data2/Vision_Group/YZW/Datasets/Fourth-Work/UCF-10Crop-WP/test/RGB/Abuse/Abuse028_x264.npy"
    )
    items = read_list(official_lists / "UCF_Test.list", "ucf", root=tmp_path,
                      strip_prefix="/data2/Vision_Group/YZW/Datasets/Fourth-Work/UCF-10Crop-WP/")
    assert items[0].path == tmp_path / "test" / "RGB" / "Abuse" / "Abuse028_x264.npy"
    videos = group_videos(items)
    assert len(videos) == 290 and sum(v.label for v in videos) == 140
    assert [v.label for v in videos] == [1] * 140 + [0] * 150
    _check_video_structure(videos, 10, range(10))
    with pytest.raises(DataValidationError) as exc:
        read_list(official_lists / "UCF_Test.list", "ucf", root=tmp_path, strip_prefix="/somewhere/else")
    assert "UCF_Test.list, line 1:" in str(exc.value)
    assert len(exc.value.problems) == 2900


@realdata
def test_xd_lists(official_lists, tmp_path):
    items = read_list(official_lists / "XD_Train.list", "xd", root=tmp_path)
    assert len(items) == 19770
    videos = group_videos(items)
    assert len(videos) == 3954
    _check_video_structure(videos, 5, range(5))
    labels = np.array([it.label for it in items])
    assert labels[:9525].all() and not labels[9525:].any()
    assert all(("_label_A" in it.path.name) == (it.label == 0) for it in items)
    it = items[2]
    assert it.path == tmp_path / "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0__2.npy"
    assert it.video == "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0" and it.crop == 2
    assert it.history_key == str(it.path)  # one history per crop file (METHOD §2.5)
    assert len({i.history_key for i in items}) == 19770

    test = group_videos(read_list(official_lists / "XD_Test.list", "xd", root=tmp_path))
    assert len(test) == 800
    assert [v.label for v in test] == [1] * 500 + [0] * 300


@realdata
def test_sht_lists(official_lists, tmp_path):
    items = read_list(official_lists / "SHT_Train.list", "sht", root=tmp_path)
    assert len(items) == 2380
    videos = group_videos(items)
    assert len(videos) == 238
    _check_video_structure(videos, 10, range(10))
    assert sum(it.label for it in items) == 630 and sum(v.label for v in videos) == 63  # 2nd column
    assert items[3].video == "01_0014" and items[3].crop == 3 and items[3].label == 1
    assert items[3].history_key == "01_0014_3"
    assert items[3].path == tmp_path / "01_0014_3.npy"
    assert items[-1].label == 0 and items[-1].history_key == "13_007_9"

    test = read_list(official_lists / "SHT_Test.list", "sht", root=tmp_path)
    assert len(test) == 1990 and {it.label for it in test} == {-1}  # no label column: derived from the GT later
    tv = group_videos(test)
    assert len(tv) == 199 and tv[0].name == "01_0015" and tv[-1].name == "13_006"


@realdata
def test_clip_csv_lists(official_lists, tmp_path):
    items = read_list(official_lists / "ucf_CLIP_rgb.csv", "csv", root=tmp_path)
    assert len(items) == 16100
    videos = group_videos(items)
    assert len(videos) == 1610
    _check_video_structure(videos, 10, range(10))
    assert sum(it.label for it in items) == 8100
    assert items[3].path == tmp_path / "Abuse" / "Abuse001_x264__3.npy"
    assert items[3].history_key == "Abuse001_x264__3"

    # relative paths resolve against the csv's folder when no root is given
    test = read_list(official_lists / "ucf_CLIP_rgbtest.csv", "csv")
    assert len(test) == 290 and {it.crop for it in test} == {5}
    assert test[0].path == official_lists / "../data/UCFImgFeatures/Abuse/Abuse028_x264__5.npy"
    tv = group_videos(test)
    assert len(tv) == 290 and [v.label for v in tv] == [1] * 140 + [0] * 150

    xd = read_list(official_lists / "xd_CLIP_rgb.csv", "csv", root=tmp_path)
    assert len(xd) == 39540
    xv = group_videos(xd)
    assert len(xv) == 3954
    _check_video_structure(xv, 10, range(10))
    assert sum(v.label for v in xv) == 1905  # class 'A' is normal
    assert xd[0].path == tmp_path / "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0__0.npy"

    xt = group_videos(read_list(official_lists / "xd_CLIP_rgbtest.csv", "csv", root=tmp_path))
    assert len(xt) == 800 and {v.crops[0].crop for v in xt} == {0}
    assert sum(v.label for v in xt) == 500


# ------------------------------------------------------------------------------------------------- small, synthetic
def test_helpers():
    assert LIST_FORMATS == ("ucf", "xd", "sht", "csv", "folder")
    assert split_crop_suffix("Abuse001_x264__3") == ("Abuse001_x264", 3)
    assert split_crop_suffix("Abuse001_x264") == ("Abuse001_x264", 0)
    assert split_crop_suffix("a__#1_label_A__4") == ("a__#1_label_A", 4)
    assert split_crop_suffix("01_0014_3", "sht") == ("01_0014", 3)
    assert split_crop_suffix("01_0014", "sht") == ("01_0014", 0)
    assert parse_label("Normal") == 0 and parse_label("A") == 0 and parse_label("B2-0-0") == 1
    assert parse_label("1") == 1 and parse_label("0.0") == 0
    with pytest.raises(ValueError):
        parse_label("2")


def test_list_errors(tmp_path):
    with pytest.raises(AdplgError, match="unknown list format 'nope'"):
        read_list(tmp_path / "x.list", "nope")
    with pytest.raises(AdplgError, match="not found"):
        read_list(tmp_path / "missing.list", "ucf")
    empty = tmp_path / "empty.list"
    empty.write_text("\n\n")
    with pytest.raises(AdplgError, match="empty"):
        read_list(empty, "ucf")
    bad = tmp_path / "bad.list"
    bad.write_text("/f/a/A001_x264.npy\n/f/a/A001_x264.txt\n/f/a/A001_x264__2.npy\nnot a path\n")
    with pytest.raises(DataValidationError) as exc:
        read_list(bad, "ucf")
    msg = str(exc.value)
    assert "bad.list, line 2" in msg and "bad.list, line 4" in msg and len(exc.value.problems) == 2
    sht = tmp_path / "sht.list"
    sht.write_text("/f/01_0001_0.npy 1.0\n/f/01_0001_1.npy yes\n/f/01_0001_2.npy 1.0 extra\n")
    with pytest.raises(DataValidationError) as exc:
        read_list(sht, "sht")
    assert [p.split(":")[0] for p in exc.value.problems] == [f"list file {sht}, line 2", f"list file {sht}, line 3"]
    csvf = tmp_path / "c.csv"
    csvf.write_text("file,label\na.npy,A\n")
    with pytest.raises(AdplgError, match="line 1: expected a header with columns path,label"):
        read_list(csvf, "csv")
    csvf.write_text("path,label\na__0.npy,A\na__1.npy\n")
    with pytest.raises(AdplgError, match="line 3: expected 2 columns"):
        read_list(csvf, "csv")


def test_group_videos_errors(tmp_path):
    def item(video, crop, label=1):
        return CropItem(path=tmp_path / f"{video}__{crop}.npy", video=video, crop=crop, label=label,
                        history_key=f"{video}__{crop}")

    videos = group_videos([item("a", 0), item("a", 1), item("b", 0)])
    assert [v.name for v in videos] == ["a", "b"] and len(videos[0].crops) == 2
    with pytest.raises(DataValidationError, match="'a': crops are not contiguous"):
        group_videos([item("a", 0), item("b", 0), item("a", 1)])
    with pytest.raises(DataValidationError, match="disagree on the label"):
        group_videos([item("a", 0, 1), item("a", 1, 0)])


def test_csv_relative_and_rerooted(tmp_path):
    d = tmp_path / "lists"
    d.mkdir()
    f = d / "train.csv"
    f.write_text("path,label\nfeats/Normal/n1__0.npy,Normal\nfeats/Normal/n1__1.npy,Normal\n"
                 "feats/Fight/f1__0.npy,Fighting\nfeats/Fight/f1__1.npy,Fighting\n")
    items = read_list(f, "csv")
    assert items[0].path == d / "feats/Normal/n1__0.npy" and items[0].label == 0
    assert items[3].label == 1 and items[3].crop == 1 and items[3].video == "f1"
    items = read_list(f, "csv", root=tmp_path / "elsewhere")
    assert items[2].path == tmp_path / "elsewhere" / "Fight" / "f1__0.npy"


def test_folder_format(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "vid_a.npy", rng.standard_normal((7, 4)).astype(np.float32))  # [T, D]: one crop
    np.save(tmp_path / "vid_b.npy", rng.standard_normal((5, 3, 4)).astype(np.float32))  # [T, C, D]: 3 crops
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "vid_c.npy", rng.standard_normal((6, 4)).astype(np.float32))
    f = tmp_path / "videos.csv"
    f.write_text("video,label\nvid_a,1\nvid_b,Normal\nsub/vid_c,0\n")
    items = read_list(f, "folder")
    assert len(items) == 5
    a, b0, b1, b2, c = items
    assert a == CropItem(path=tmp_path / "vid_a.npy", video="vid_a", crop=0, label=1, history_key="vid_a")
    assert [x.array_index for x in (b0, b1, b2)] == [0, 1, 2]
    assert [x.crop for x in (b0, b1, b2)] == [0, 1, 2]
    assert {x.path for x in (b0, b1, b2)} == {tmp_path / "vid_b.npy"} and b1.label == 0
    assert b2.history_key == "vid_b__2"
    assert c.video == "sub/vid_c" and c.path == tmp_path / "sub" / "vid_c.npy"
    videos = group_videos(items)
    assert [len(v.crops) for v in videos] == [1, 3, 1]

    # features under another root; missing files and bad shapes are all reported together
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "vid_a.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(DataValidationError) as exc:
        read_list(f, "folder", root=other)
    probs = exc.value.problems
    assert len(probs) == 3
    assert "vid_a.npy" in probs[0] and "expected a [T, D] or [T, C, D] array, got shape (5,)" in probs[0]
    assert "vid_b.npy" in probs[1] and "not found" in probs[1]
