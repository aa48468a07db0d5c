"""``adplg extract``: decoding, preprocessing, I3D / CLIP extraction into the published layouts, resume, sharding,
the manifest guard and the CLI. Videos are tiny synthetic clips written here with PyAV; the backbones carry random
weights in the public checkpoint layouts (``backbone_weights``), with a tiny CLIP tower to keep the run short."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from backbone_weights import write_random_clip, write_random_i3d
from media import write_video

from adplg.cli.extract import add_parser, parse_shard
from adplg.conventions import crop_file_names
from adplg.data.features import FeatureStore
from adplg.data.lists import read_list
from adplg.errors import AdplgError
from adplg.features.extract import collect_videos, extract_many
from adplg.features.extractors import build_extractor
from adplg.features.video import SnippetReader, crop_views, probe_video, resize_short_side


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    (root / "set").mkdir()
    out = {
        "a": write_video(root / "set" / "Abuse001_x264.mp4", 40, seed=1),  # T = 2
        "b": write_video(root / "set" / "Normal_Videos001_x264.mp4", 34, 96, 72, seed=2),  # T = 2
        "c": write_video(root / "set" / "Arson002_x264.mp4", 20, seed=3),  # T = 1
        "short": write_video(root / "short.mp4", 10, seed=4),
    }
    out["not_video"] = root / "notes.mp4"
    out["not_video"].write_text("this is not a video\n")
    out["set"] = root / "set"
    return out


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory) -> Path:
    return write_random_i3d(tmp_path_factory.mktemp("w") / "rgb_imagenet.pt", seed=0)


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory) -> Path:
    return write_random_clip(tmp_path_factory.mktemp("w") / "ViT-B-16.pt", seed=0, width=32, layers=1)


@pytest.fixture(scope="module")
def i3d_one_crop(i3d_weights):
    return build_extractor("i3d", i3d_weights, crops=1, batch_snippets=2)


@pytest.fixture(scope="module")
def clip_middle(clip_weights):
    return build_extractor("clip", clip_weights, crops=1, clip_frame="middle")


# ---------------------------------------------------------------------------------------------------- preprocessing
def test_crop_views_order_and_flips():
    x = torch.arange(4 * 6, dtype=torch.float32).reshape(1, 1, 4, 6)  # [N=1, C=1, H=4, W=6]
    views = crop_views(x, 2, 10)
    assert views.shape == (10, 1, 1, 2, 2)
    grid = x[0, 0]
    expected = [grid[1:3, 2:4], grid[0:2, 0:2], grid[0:2, 4:6], grid[2:4, 0:2], grid[2:4, 4:6]]
    for k, want in enumerate(expected):
        assert torch.equal(views[k, 0, 0], want), f"view {k}"
        assert torch.equal(views[k + 5, 0, 0], want.flip(-1)), f"view {k + 5} (flip of {k})"
    assert torch.equal(crop_views(x, 2, 5), views[:5])
    assert torch.equal(crop_views(x, 2, 1), views[:1])
    with pytest.raises(AdplgError, match="crops"):
        crop_views(x, 2, 3)


def test_resize_short_side_keeps_aspect():
    landscape = np.zeros((2, 48, 64, 3), np.uint8)
    portrait = torch.full((1, 64, 48, 3), 200, dtype=torch.uint8)
    assert resize_short_side(landscape, 256).shape == (2, 3, 256, 341)
    out = resize_short_side(portrait, 224, "bicubic")
    assert out.shape == (1, 3, 299, 224) and out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor(200.0))  # a constant image stays constant, in [0, 255]


def test_snippet_reader_drops_the_partial_snippet(videos):
    reader = SnippetReader(videos["b"])
    shapes = [s.shape for s in reader]
    assert shapes == [(16, 72, 96, 3)] * 2 and reader.frames_decoded == 34
    info = probe_video(videos["b"])
    assert (info.fps, info.width, info.height) == (25.0, 96, 72)


# ------------------------------------------------------------------------------------------------------------ I3D
def test_i3d_one_crop_manifest_resume_determinism(videos, i3d_one_crop, i3d_weights, clip_middle, tmp_path):
    out = tmp_path / "feats"
    report = extract_many(videos["a"], i3d_one_crop, out, progress=False)
    assert report.done == ["Abuse001_x264"] and report.ok
    features = np.load(out / "Abuse001_x264.npy")
    assert features.shape == (2, 1024) and features.dtype == np.float32 and np.isfinite(features).all()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backbone"] == "i3d" and manifest["crops"] == 1 and manifest["feature_dim"] == 1024
    assert manifest["weights_sha256"] == __import__("hashlib").sha256(i3d_weights.read_bytes()).hexdigest()
    assert manifest["snippet_frames"] == 16 and "non-overlapping" in manifest["snippet_layout"]
    assert manifest["dtype"] == "float32" and manifest["naming"] == "ucf" and "torch" in manifest["versions"]
    meta = json.loads((out / "meta" / "Abuse001_x264.json").read_text())
    assert meta["fps"] == 25.0 and meta["frames_decoded"] == 40 and meta["snippets"] == 2
    assert meta["frames_covered"] == 32 and meta["crop_files"] == ["Abuse001_x264.npy"]
    assert meta["time_source"] == "pts" and meta["duration_s"] == 1.6 and "frame_count_mismatch" not in meta
    assert meta["snippet_start_s"] == [0.0, 0.64] and meta["snippet_end_s"] == [0.64, 1.28]  # constant 25 fps

    again = extract_many(videos["a"], i3d_one_crop, out, progress=False)
    assert again.skipped == ["Abuse001_x264"] and not again.done  # resume: finished videos are not redone

    fresh = extract_many(videos["a"], i3d_one_crop, tmp_path / "again", progress=False)
    assert fresh.done == ["Abuse001_x264"]
    assert np.array_equal(np.load(tmp_path / "again" / "Abuse001_x264.npy"), features)  # bit-identical

    with pytest.raises(AdplgError, match=r"'naming'.*'ucf'.*'xd'"):
        extract_many(videos["a"], i3d_one_crop, out, naming="xd", progress=False)
    with pytest.raises(AdplgError, match=r"'backbone'.*'i3d'.*'clip'"):
        extract_many(videos["a"], clip_middle, out, progress=False)


def test_i3d_five_crops_xd_naming_and_list(videos, i3d_weights, tmp_path):
    extractor = build_extractor("i3d", i3d_weights, crops=5)
    report = extract_many(videos["c"], extractor, tmp_path, naming="xd", progress=False)
    assert report.ok
    names = [f"Arson002_x264__{k}.npy" for k in range(5)]
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == names
    crops = [np.load(tmp_path / n) for n in names]
    assert all(c.shape == (1, 1024) for c in crops)
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.allclose(crops[i], crops[j]), f"crop {i} == crop {j}"
    items = read_list(tmp_path / "features.list", "xd")
    assert [it.crop for it in items] == list(range(5)) and {it.video for it in items} == {"Arson002_x264"}
    store = FeatureStore.load(items, feature_dim=1024, crops_per_video=5, progress=False)
    assert np.array_equal(store[3], crops[3])


def test_crop_file_names():
    assert crop_file_names("v", 3, "ucf") == ["v.npy", "v__1.npy", "v__2.npy"]
    assert crop_file_names("v", 2, "xd") == ["v__0.npy", "v__1.npy"]
    assert crop_file_names("01_0014", 2, "sht") == ["01_0014_0.npy", "01_0014_1.npy"]


# ----------------------------------------------------------------------------------------------------------- CLIP
def test_clip_middle_and_mean(videos, clip_weights, clip_middle):
    middle, info, decoded = clip_middle.video_features(videos["a"])
    assert middle.shape == (2, 1, 512) and middle.dtype == np.float32 and decoded == 40
    mean = build_extractor("clip", clip_weights, crops=1, clip_frame="mean").video_features(videos["a"])[0]
    assert mean.shape == (2, 1, 512) and not np.allclose(mean, middle)
    assert clip_middle.settings()["clip_frame"] == "middle" and clip_middle.settings()["resize_short_side"] == 224
    five = build_extractor("clip", clip_weights, crops=5)
    assert five.settings()["resize_short_side"] == 256 and five.video_features(videos["c"])[0].shape == (1, 5, 512)


# ----------------------------------------------------------------------------------------------- sharding and CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_shards_cover_every_video_once(videos, clip_weights, tmp_path, capsys):
    out = tmp_path / "feats"
    common = ["--backbone", "clip", "--weights", str(clip_weights), "--out", str(out), "--quiet", "--device", "cpu"]
    assert _cli(["extract", str(videos["set"]), *common, "--shard", "0/2"]) == 0
    first = {p.stem for p in (out / "meta").glob("*.json")}
    assert _cli(["extract", str(videos["set"]), *common, "--shard", "1/2"]) == 0
    both = {p.stem for p in (out / "meta").glob("*.json")}
    assert len(first) == 2 and len(both - first) == 1
    assert both == {"Abuse001_x264", "Normal_Videos001_x264", "Arson002_x264"}
    assert "extracted 1 video(s)" in capsys.readouterr().out

    items = read_list(out / "features.list", "ucf")
    assert [it.video for it in items] == sorted(both)
    assert {it.label for it in items if it.video.startswith("Normal")} == {0}
    store = FeatureStore.load(items, feature_dim=512, crops_per_video=1, progress=False)
    assert list(store.lengths) == [2, 1, 2]  # Abuse001 (40 frames), Arson002 (20), Normal_Videos001 (34)


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        _cli(["extract", "--help"])
    assert "examples" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------- errors
def test_bad_and_short_videos_fail_alone(videos, clip_middle, tmp_path):
    with pytest.raises(AdplgError, match="notes.mp4"):
        clip_middle.video_features(videos["not_video"])
    with pytest.raises(AdplgError, match=r"short.mp4: too short: expected at least 16 .* got 10"):
        clip_middle.video_features(videos["short"])
    report = extract_many([videos["c"], videos["short"], videos["not_video"]], clip_middle, tmp_path, progress=False)
    assert report.done == ["Arson002_x264"]
    assert sorted(Path(v).name for v, _ in report.failed) == ["notes.mp4", "short.mp4"]
    assert not (tmp_path / "short.npy").exists() and not (tmp_path / "meta" / "short.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_duplicate_names_and_list_inputs(videos, tmp_path):
    twin = write_video(tmp_path / "Arson002_x264.avi", 16)
    with pytest.raises(AdplgError, match=r"'Arson002_x264'.*Arson002_x264\.mp4.*Arson002_x264\.avi"):
        collect_videos([videos["set"], twin])
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{videos['a']}\n\n# a comment\n{twin.name}\n")
    assert collect_videos(listing) == [videos["a"], twin]  # sorted by name; relative to the list's folder
    assert collect_videos([videos["a"], videos["a"]]) == [videos["a"]]


def test_bad_shard_text(clip_weights, videos, tmp_path):
    assert parse_shard("1/3") == (1, 3)
    for text in ("3/3", "a/b", "1", "-1/2"):
        with pytest.raises(AdplgError, match=rf"--shard: expected i/n with 0 <= i < n, got '{text}'"):
            parse_shard(text)
    with pytest.raises(AdplgError, match="--shard"):
        _cli(["extract", str(videos["a"]), "--backbone", "clip", "--weights", str(clip_weights), "--out", str(tmp_path),
              "--shard", "2/2"])
