"""Frame GT: rebuilt from the official annotations it must equal PEL4VAD's per-video GT exactly (UCF, XD); the
official sh-gt.npy loads with a length check; snippet layouts expand as specified."""

import numpy as np
import pytest

from adplg.data import (
    FrameGT,
    SnippetLayout,
    annotation_key,
    build_frame_gt,
    check_lengths,
    group_videos,
    load_gt_file,
    read_list,
    read_ucf_annotations,
    read_ucf_frame_counts,
    read_xd_annotations,
)
from adplg.errors import AdplgError, DataValidationError

realdata = pytest.mark.realdata


def _assert_equals_reference(gt: FrameGT, ref: dict):
    assert len(gt.videos) == len(ref)
    for i, name in enumerate(gt.videos):
        assert np.array_equal(gt.video(i), ref[name]), name


@realdata
def test_ucf_gt_rebuilt_from_annotations(shared, label_npz, official_lists):
    ref = label_npz("ucf/pel4vad_ucf_test_gt_per_video.npz")
    videos = group_videos(read_list(official_lists / "UCF_Test.list", "ucf"))
    assert len(videos) == 290
    names = [v.name for v in videos]
    assert set(names) == set(ref)
    num_snippets = [len(ref[n]) // 16 for n in names]
    gt = build_frame_gt(names, num_snippets, read_ucf_annotations(official_lists / "UCF_Annotation.txt"))
    assert gt.labels.dtype == np.uint8
    assert len(gt) == 1_109_680 and gt.num_abnormal == 84_128
    assert int(gt.offsets[140]) == 461_856  # the 140 abnormal videos come first (AUC_A)
    _assert_equals_reference(gt, ref)
    assert gt.video_labels().tolist() == [v.label for v in videos]
    check_lengths(gt, [16 * t for t in num_snippets], "ucf test")

    # Abuse028: 1,408 frames, ones on [165, 240) for the annotation 165-240
    assert np.flatnonzero(gt.video(0)).tolist() == list(range(165, 240)) and len(gt.video(0)) == 1408
    # Sultani's original annotation file gives the same GT
    sultani = shared / "data" / "labels" / "ucf" / "Temporal_Anomaly_Annotation.txt"
    if sultani.is_file():
        gt2 = build_frame_gt(names, num_snippets, read_ucf_annotations(sultani))
        assert np.array_equal(gt2.labels, gt.labels)
    counts = read_ucf_frame_counts(official_lists / "UCF_Annotation.txt")
    assert len(counts) == 290 and counts["Arson022_x264"] == 8640


@realdata
def test_xd_gt_rebuilt_from_annotations(label_npz, official_lists):
    ref = label_npz("xd/pel4vad_xd_test_gt_per_video.npz")
    videos = group_videos(read_list(official_lists / "XD_Test.list", "xd"))
    assert len(videos) == 800
    names = [v.name for v in videos]
    assert set(names) == set(ref)
    ann = read_xd_annotations(official_lists / "XD_annotations.txt")
    assert len(ann) == 500 and set(ann) <= set(names)  # '.mp4' stripped from the 14 keys that carry it
    num_snippets = [len(ref[n]) // 16 for n in names]
    gt = build_frame_gt(names, num_snippets, ann)
    assert len(gt) == 2_330_384 and gt.num_abnormal == 537_805
    _assert_equals_reference(gt, ref)
    assert gt.video_labels().tolist() == [v.label for v in videos]


@realdata
def test_sht_gt_file(official_lists):
    path = official_lists / "sh-gt.npy"
    videos = [v.name for v in group_videos(read_list(official_lists / "SHT_Test.list", "sht"))]
    assert len(videos) == 199
    # The per-video snippet counts of PEL4VAD's SHT features are not available here, so the check uses a
    # partition of the 8,757 snippets (140,112 frames / 16) over the 199 videos; only the total is checked.
    snippets = [44] * 199
    snippets[0] += 1
    expected = [16 * t for t in snippets]
    gt = load_gt_file(path, videos, expected)
    assert len(gt) == 140_112 and gt.num_abnormal == 7_874 and gt.labels.dtype == np.uint8
    assert gt.offsets[-1] == 140_112 and gt.videos == videos

    too_long = list(expected)
    too_long[5] += 16
    with pytest.raises(AdplgError) as exc:
        load_gt_file(path, videos, too_long)
    msg = str(exc.value)
    assert str(path) in msg and "expected 140128 frames" in msg and "got 140112" in msg
    assert f"ends inside video {videos[-1]!r}" in msg
    too_short = list(expected)
    too_short[0] -= 32
    with pytest.raises(AdplgError, match="expected 140080 frames .* got 140112; 32 frames are left over"):
        load_gt_file(path, videos, too_short)


def test_load_gt_file_errors(tmp_path):
    p = tmp_path / "gt.npy"
    np.save(p, np.array([0, 0, 1, 1, 0, 0, 0, 1], dtype=np.float64))
    gt = load_gt_file(p, ["a", "b"], [4, 4])
    assert gt.video(1).tolist() == [0, 0, 0, 1] and gt.video_labels().tolist() == [1, 1]
    with pytest.raises(AdplgError, match=r"expected 12 frames \(sum over 2 videos\), got 8; the file ends inside "
                                         r"video 'b' \(#1\), whose slice would be \[4, 12\)"):
        load_gt_file(p, ["a", "b"], [4, 8])
    np.save(p, np.array([0, 2, 1]))
    with pytest.raises(AdplgError, match="expected 0/1 frame labels"):
        load_gt_file(p, ["a"], [3])
    with pytest.raises(AdplgError, match="not found"):
        load_gt_file(tmp_path / "nope.npy", ["a"], [3])


def test_build_frame_gt_conventions():
    intervals = {"v1": [(2, 5)], "v2.mp4": [(0, 3), (30, 40)]}
    gt = build_frame_gt(["v1", "v2", "v3"], [1, 2, 1], {annotation_key(k): v for k, v in intervals.items()},
                        layout=SnippetLayout(frames_per_snippet=4))
    assert gt.offsets.tolist() == [0, 4, 12, 16]
    assert gt.labels.tolist() == [0, 0, 1, 1] + [1, 1, 1, 0, 0, 0, 0, 0] + [0] * 4  # [s, e), clipped to the video
    inc = build_frame_gt(["v1"], [2], {"v1": [(2, 5)]}, layout=SnippetLayout(frames_per_snippet=4), end_inclusive=True)
    assert np.flatnonzero(inc.labels).tolist() == [2, 3, 4, 5]
    one = build_frame_gt(["v1"], [2], {"v1": [(2, 5)]}, layout=SnippetLayout(frames_per_snippet=4),
                         end_inclusive=True, one_based=True)
    assert np.flatnonzero(one.labels).tolist() == [1, 2, 3, 4]
    spread = build_frame_gt(["v1"], [3], {"v1": [(7, 8)]}, layout=SnippetLayout(kind="spread", window=4),
                            video_frames=[10], end_inclusive=True)
    assert len(spread) == 10 and np.flatnonzero(spread.labels).tolist() == [7, 8]


def test_check_lengths_names_video():
    gt = build_frame_gt(["a", "b", "c"], [2, 3, 1], {})
    check_lengths(gt, [32, 48, 16], "preds")
    with pytest.raises(DataValidationError) as exc:
        check_lengths(gt, [32, 64, 16], "preds")
    assert exc.value.problems[0] == "preds: video 'b': GT has 48 frames, expected 64"
    with pytest.raises(DataValidationError, match="expected 3 videos"):
        check_lengths(gt, [32, 48], "preds")


def test_annotation_readers_small(tmp_path):
    f = tmp_path / "ann.txt"
    f.write_text("Arson/Arson022_x264.mp4 8640 Arson 3500 4000 -1 -1\n"
                 "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
                 "Testing_Normal_Videos_Anomaly/Normal_Videos_872_x264.mp4 530 Normal -1 -1 -1 -1\n")
    assert read_ucf_annotations(f) == {"Arson022_x264": [(3500, 4000)], "Abuse028_x264": [(165, 240)],
                                       "Normal_Videos_872_x264": []}
    f.write_text("Abuse028_x264.mp4 Abuse 165 x\nAbuse030_x264.mp4 Abuse 1 2 3\n")
    with pytest.raises(DataValidationError) as exc:
        read_ucf_annotations(f)
    assert len(exc.value.problems) == 2 and "line 1" in exc.value.problems[0] and "line 2" in exc.value.problems[1]
    x = tmp_path / "xd.txt"
    x.write_text("a__#1_label_B1-0-0 0 10 20 30\nb__#1_label_G-0-0.mp4 5 6\n")
    assert read_xd_annotations(x) == {"a__#1_label_B1-0-0": [(0, 10), (20, 30)], "b__#1_label_G-0-0": [(5, 6)]}
    x.write_text("a 0 10 20\n")
    with pytest.raises(DataValidationError, match="line 1: expected start/end pairs"):
        read_xd_annotations(x)


# ---------------------------------------------------------------------------------------------------------- layouts
def test_uniform_layout():
    layout = SnippetLayout()
    assert layout.num_frames(7) == 112
    scores = np.array([0.1, 0.9, 0.4], np.float32)
    out = layout.expand(scores)
    assert out.shape == (48,) and out.dtype == np.float32
    assert np.array_equal(out, np.repeat(scores, 16))


def test_spread_layout_hand_computed():
    layout = SnippetLayout(kind="spread", window=4)
    # F = 10, T = 3: s_i = floor((10 - 4) * i / 2) = [0, 3, 6]; centres s_i + 2 = [2, 5, 8]
    assert layout.snippet_starts(3, 10).tolist() == [0, 3, 6]
    assert layout.num_frames(3, 10) == 10
    out = layout.expand(np.array([0.0, 1.0, 0.5]), video_frames=10)
    expected = [0.0, 0.0, 0.0, 1 / 3, 2 / 3, 1.0, 5 / 6, 2 / 3, 0.5, 0.5]  # clamped before 2 and after 8
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    # R1: 200 snippets over F frames, window 54: s_i = floor((F - 54) * i / 199)
    r1 = SnippetLayout(kind="spread")
    starts = r1.snippet_starts(200, 1412)
    assert starts[0] == 0 and starts[-1] == 1412 - 54 and starts[100] == (1358 * 100) // 199
    assert r1.expand(np.arange(200, dtype=np.float64), 1412).shape == (1412,)
    assert SnippetLayout(kind="spread", window=4).expand(np.array([0.7]), 5).tolist() == [0.7] * 5
    with pytest.raises(AdplgError, match="needs the video's frame count"):
        r1.num_frames(200)
    with pytest.raises(AdplgError, match="unknown snippet layout"):
        SnippetLayout(kind="weird")
