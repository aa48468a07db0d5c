"""``adplg doctor``: one report of every problem of a feature folder, its lists and its annotations."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from adplg.cli.doctor import add_parser, config_overrides
from adplg.cli.main import parse_args
from adplg.config import build_config
from adplg.data.features import FeatureStore
from adplg.data.lists import group_videos, read_list
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.doctor.checks import diagnose, diagnose_extraction
from adplg.doctor.report import format_report
from adplg.errors import AdplgError, DataValidationError

DIM = 16
BASE_ARGS = ["--preset", "demo-cpu-small", "--quiet", f"data.feature_dim={DIM}", "train.batch_size=4"]


@pytest.fixture
def dataset(tmp_path):
    return generate_synthetic_ucf(tmp_path / "ucf", num_train_normal=3, num_train_abnormal=3, num_test_normal=4,
                                  num_test_abnormal=4, feature_dim=DIM, crops=2, max_snippets=40, seed=0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_parser(sub)
    return p


def _run(argv: list[str]) -> int:
    args = parse_args(_parser(), ["doctor", *argv])
    return args.func(args)


def _config(ds, *overrides: str):
    return build_config("demo-cpu-small", overrides=[f"data.list_dir={ds.root}", f"data.feature_dim={DIM}",
                                                      "train.batch_size=4", *overrides])


def _test_videos(ds):
    return group_videos(read_list(ds.test_list, "ucf"))


# ------------------------------------------------------------------------------------------------------ healthy
def test_clean_dataset_is_healthy(dataset, capsys):
    assert _run(["--list_dir", str(dataset.root), *BASE_ARGS]) == 0
    out = capsys.readouterr().out
    assert "verdict: HEALTHY (train, test)" in out and "problems: none" in out

    report = diagnose(_config(dataset), progress=False)
    train, test = report.splits
    assert report.healthy and report.num_warnings == 0
    assert (train.crops, train.videos, train.abnormal_videos, train.normal_videos) == (12, 6, 3, 3)
    assert (test.crops, test.videos, test.files, test.files_found) == (16, 8, 16, 16)
    lengths = [np.load(c.path, mmap_mode="r").shape[0] for v in _test_videos(dataset) for c in v.crops[:1]]
    assert (test.length_min, test.length_max, test.length_median) == (min(lengths), max(lengths), np.median(lengths))
    assert test.total_snippets == 2 * sum(lengths) and test.gt_frames == 16 * sum(lengths)
    assert test.value_sample_size > 0 and test.value_std > 0


# ------------------------------------------------------------------------------------------------------- broken
def _break_dataset(ds) -> dict:
    """Break the test split in many ways at once (and the train split once); return what was broken."""
    videos = _test_videos(ds)
    normal = [v for v in videos if v.label == 0]
    abnormal = [v for v in videos if v.label == 1]
    broken = {
        "missing": [normal[0].crops[1].path, normal[1].crops[0].path],
        "truncated": normal[2].crops[0].path,
        "nonfinite": normal[3].crops[0].path,
        "dim": normal[3].crops[1].path,
        "crop_length": abnormal[0],
        "beyond_end": abnormal[1],
        "unannotated": abnormal[2],
        "train_missing": read_list(ds.train_list, "ucf")[0].path,
    }
    for path in (*broken["missing"], broken["train_missing"]):
        Path(path).unlink()
    data = Path(broken["truncated"]).read_bytes()
    Path(broken["truncated"]).write_bytes(data[:-50])
    arr = np.load(broken["nonfinite"])
    arr[0, 0], arr[1, 1], arr[2, 2] = np.nan, np.inf, np.nan
    np.save(broken["nonfinite"], arr)
    np.save(broken["dim"], np.zeros((arr.shape[0], DIM + 1), np.float32))
    crop = abnormal[0].crops[1].path
    np.save(crop, np.load(crop)[:-3])
    _edit_annotations(ds, beyond=abnormal[1], drop=abnormal[2])
    return broken


def _edit_annotations(ds, beyond, drop) -> None:
    """Move one video's interval past its end, drop another video's line, annotate a video not in the list."""
    t = np.load(beyond.crops[0].path, mmap_mode="r").shape[0]
    lines = []
    for line in ds.annotations.read_text().splitlines():
        name, frames, cls = line.split()[:3]
        if beyond.name in name:
            line = f"{name} {frames} {cls} {16 * t + 100} {16 * t + 200} -1 -1"
        if drop.name not in name:
            lines.append(line)
    lines.append("Abuse/Abuse999_x264.mp4 1000 Abuse 10 20 -1 -1")
    ds.annotations.write_text("\n".join(lines) + "\n")


def test_every_problem_in_one_report(dataset, tmp_path, capsys):
    broken = _break_dataset(dataset)
    json_file = tmp_path / "out" / "doctor.json"
    rc = _run(["--list_dir", str(dataset.root), "--json", str(json_file), "--max_shown", "1", *BASE_ARGS])
    assert rc == 1
    out = capsys.readouterr().out
    assert "verdict: PROBLEMS FOUND (train, test): 9 error(s) and 1 warning(s)" in out
    assert "feature file not found: 2" in out and "... and 1 more" in out

    payload = json.loads(json_file.read_text())
    assert payload["healthy"] is False and (payload["errors"], payload["warnings"]) == (9, 1)
    train, test = payload["splits"]
    assert [p["kind"] for p in train["problems"]] == ["missing"]
    assert str(broken["train_missing"]) in train["problems"][0]["message"]

    kinds = Counter((p["kind"], p["severity"]) for p in test["problems"])
    assert kinds == Counter({("missing", "error"): 2, ("truncated", "error"): 1, ("nonfinite", "error"): 1,
                             ("dim", "error"): 1, ("crop_length", "error"): 1, ("beyond_end", "error"): 1,
                             ("unannotated", "error"): 1, ("not_in_list", "warning"): 1})
    messages = {kind: [p["message"] for p in test["problems"] if p["kind"] == kind] for kind, _ in kinds}
    assert sorted(messages["missing"]) == sorted(f"{p}: feature file not found (expected an existing .npy file; "
                                                 f"video {p.stem.split('__')[0]!r})" for p in broken["missing"])
    assert messages["truncated"][0].startswith(f"{broken['truncated']}: truncated")
    assert "expected all finite, got 3 NaN/Inf" in messages["nonfinite"][0]
    assert f"{broken['dim']}: wrong feature dimension: expected {DIM}, got {DIM + 1}" in messages["dim"][0]
    assert f"crops of video {broken['crop_length'].name!r} differ in length" in messages["crop_length"][0]
    assert broken["beyond_end"].name in messages["beyond_end"][0] and "expected frames within" in \
        messages["beyond_end"][0]
    assert broken["unannotated"].name in messages["unannotated"][0]
    assert "'Abuse999_x264' is annotated but not in the test list" in messages["not_in_list"][0]
    assert (test["files"], test["files_found"], test["files_missing"]) == (16, 14, 2)
    assert (test["files_unreadable"], test["files_nonfinite"], test["nonfinite_values"]) == (1, 1, 3)


def test_doctor_and_feature_store_share_the_file_checks(dataset):
    _break_dataset(dataset)
    report = diagnose(_config(dataset), splits=("test",), progress=False)
    doctor_messages = {p.message for p in report.splits[0].problems
                       if p.kind in ("missing", "truncated", "nonfinite", "dim", "crop_length")}
    for mmap in (False, True):
        with pytest.raises(DataValidationError) as exc:
            FeatureStore.load(read_list(dataset.test_list, "ucf"), feature_dim=DIM, crops_per_video=2, mmap=mmap,
                              progress=False)
        assert set(exc.value.problems) == doctor_messages


def test_gt_file_length(dataset, tmp_path):
    frames = diagnose(_config(dataset), splits=("test",), progress=False).splits[0].gt_frames
    good, short = tmp_path / "gt.npy", tmp_path / "short.npy"
    np.save(good, np.zeros(frames, np.uint8))
    np.save(short, np.zeros(frames - 5, np.uint8))
    assert diagnose(_config(dataset, f"data.gt_file={good}"), splits=("test",), progress=False).healthy
    split = diagnose(_config(dataset, f"data.gt_file={short}"), splits=("test",), progress=False).splits[0]
    assert [p.kind for p in split.problems] == ["gt_length"]
    assert f"expected {frames} frames (sum over 8 videos), got {frames - 5}" in split.problems[0].message


def test_length_rules_and_list_problems(dataset, tmp_path):
    report = diagnose(_config(dataset, "model.max_len=20"), progress=False)
    train, test = report.splits
    long_videos = {v.name for v in _test_videos(dataset) if np.load(v.crops[0].path, mmap_mode="r").shape[0] > 20}
    assert long_videos and {p.severity for p in train.problems if p.kind == "too_long"} == {"warning"}
    assert len([p for p in test.problems if p.kind == "too_long"]) == len(long_videos)
    # testing scores a long video in overlapping windows, as `adplg score` does: a warning, not an error
    assert {p.severity for p in test.problems if p.kind == "too_long"} == {"warning"}
    assert any("T > model.max_len = 20 is a warning" in rule for rule in test.rules)

    missing = diagnose(_config(dataset, f"data.list_dir={tmp_path / 'nowhere'}"), progress=False)
    assert [p.kind for s in missing.splits for p in s.problems] == ["list", "list"]
    assert "not found" in format_report(missing)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_positional_data_and_overrides(dataset, capsys):
    args = parse_args(_parser(), ["doctor", str(dataset.root / "test"), "--split", "test", "a.b=1", "--quiet"])
    assert (args.data, args.overrides, args.split) == (str(dataset.root / "test"), ["a.b=1"], "test")
    assert config_overrides(args) == [f"data.feature_root={dataset.root / 'test'}", "a.b=1"]
    assert _run([str(dataset.root / "test"), "--split", "test", "--list_dir", str(dataset.root), *BASE_ARGS]) == 0
    assert "features under " + str(dataset.root / "test") in capsys.readouterr().out

    args = parse_args(_parser(), ["doctor", "a.b=1", "--feature_root", "/x"])
    assert config_overrides(args) == ["data.feature_root=/x", "a.b=1"]
    with pytest.raises(AdplgError, match="disagree"):
        _run(["/x", "--feature_root", "/y"])
    with pytest.raises(AdplgError, match="unknown preset"):
        _run(["--preset", "no-such-preset"])


def test_cli_data_that_holds_the_lists_is_the_list_folder(dataset, capsys):
    """``adplg doctor runs/demo/data --preset demo-cpu-small``: DATA holds the preset's lists, so it is data.list_dir
    (not a feature root the lists' paths would be re-rooted onto), alone or given again as --list_dir."""
    args = parse_args(_parser(), ["doctor", str(dataset.root), "--preset", "demo-cpu-small"])
    assert config_overrides(args) == [f"data.list_dir={dataset.root}"]
    assert _run([str(dataset.root), *BASE_ARGS]) == 0
    assert "verdict: HEALTHY (train, test)" in capsys.readouterr().out
    assert _run([str(dataset.root), "--list_dir", str(dataset.root), *BASE_ARGS]) == 0
    out = capsys.readouterr().out
    assert "verdict: HEALTHY (train, test)" in out and "problems: none" in out
    args = parse_args(_parser(), ["doctor", str(dataset.root), "--feature_root", "/x", "--preset", "demo-cpu-small"])
    assert config_overrides(args) == ["data.feature_root=/x", f"data.list_dir={dataset.root}"]
    # a folder without the preset's lists is still the feature folder
    args = parse_args(_parser(), ["doctor", str(dataset.root / "train"), "--list_dir", str(dataset.root)])
    assert config_overrides(args) == [f"data.feature_root={dataset.root / 'train'}", f"data.list_dir={dataset.root}"]


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["doctor", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "adplg doctor /data/UCF-10Crop --preset ucf-i3d" in out


# ------------------------------------------------------------------------------------------ extraction folders
def _fake_extraction(root: Path, lengths: dict[str, int], crops: int = 2, dim: int = 8) -> Path:
    """A folder laid out like `adplg extract`'s output (ucf naming), written directly with numpy."""
    from adplg.conventions import crop_file_names

    (root / "meta").mkdir(parents=True)
    manifest = {"backbone": "i3d", "feature_dim": dim, "crops": crops, "naming": "ucf", "snippet_frames": 16}
    (root / "manifest.json").write_text(json.dumps(manifest))
    listed = []
    for k, (video, t) in enumerate(lengths.items()):
        files = crop_file_names(video, crops, "ucf")
        for c, name in enumerate(files):
            np.save(root / name, np.random.default_rng(10 * k + c).normal(size=(t, dim)).astype(np.float32))
            listed.append(str(root / name))
        meta = {"video": video, "crops": crops, "crop_files": files, "snippets": t, "feature_shape": [t, dim],
                "fps": 25.0}
        (root / "meta" / f"{video}.json").write_text(json.dumps(meta))
    (root / "features.list").write_text("\n".join(listed) + "\n")
    return root


def test_extraction_folder_clean(tmp_path, capsys):
    folder = _fake_extraction(tmp_path / "out", {"Abuse001_x264": 5, "Normal_Videos001_x264": 3})
    assert _run([str(folder), "--quiet"]) == 0  # no list files needed: the manifest says what to expect
    out = capsys.readouterr().out
    assert "extraction folder" in out and "verdict: HEALTHY (extraction folder)" in out and "problems: none" in out
    assert "4 crop files of 2 finished videos" in out and "list/UCF_Train.list" not in out


def test_extraction_folder_problems_in_one_report(tmp_path, capsys):
    folder = _fake_extraction(tmp_path / "out", {"A001": 5, "B002": 3, "C003": 4, "D004": 6, "E005": 2, "F006": 4})
    np.save(folder / "A001.npy", np.zeros((5, 9), np.float32))  # wrong D
    np.save(folder / "B002__1.npy", np.zeros((2, 8), np.float32))  # T differs from the other crop and the meta
    arr = np.load(folder / "C003.npy")
    arr[1, 2] = np.nan
    np.save(folder / "C003.npy", arr)
    (folder / "D004__1.npy").write_bytes((folder / "D004__1.npy").read_bytes()[:-40])  # truncated
    (folder / "meta" / "E005.json").write_text("{not json")  # unreadable meta record
    (folder / "meta" / "F006.json").unlink()  # half-extracted: crop files without a meta record
    np.save(folder / "G007.npy", np.zeros((3, 8), np.float32))  # half-extracted: only the first crop
    json_file = tmp_path / "report.json"
    assert _run([str(folder), "--quiet", "--json", str(json_file)]) == 1
    out = capsys.readouterr().out
    assert "verdict: PROBLEMS FOUND (extraction folder)" in out
    payload = json.loads(json_file.read_text())
    problems = payload["splits"][0]["problems"]
    kinds = Counter(p["kind"] for p in problems)
    assert kinds == Counter({"dim": 1, "crop_length": 1, "meta_mismatch": 1, "nonfinite": 1, "truncated": 1,
                             "meta": 1, "orphan": 2, "feature_list": 1}), problems
    text = {p["kind"]: p["message"] for p in problems}
    assert f"{folder / 'A001.npy'}: wrong feature dimension: expected 8, got 9" in text["dim"]
    assert "expected snippets = 3, got T = 2" in text["meta_mismatch"] and "B002__1.npy" in text["meta_mismatch"]
    assert str(folder / "meta" / "E005.json") in text["meta"]
    orphans = sorted(p["message"] for p in problems if p["kind"] == "orphan")
    assert "video 'F006' has 2 crop file(s) but no meta record" in orphans[0]
    assert "video 'G007' has 1 crop file(s)" in orphans[1] and "half-extracted" in orphans[1]
    assert {p["severity"] for p in problems if p["kind"] == "feature_list"} == {"warning"}
    assert (payload["errors"], payload["warnings"]) == (8, 1)


def test_extraction_folder_unreadable_manifest(tmp_path, capsys):
    folder = _fake_extraction(tmp_path / "out", {"A001": 5})
    (folder / "manifest.json").write_text("{")
    assert _run([str(folder), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "manifest.json: cannot read the extraction manifest as JSON" in out
    np.save(folder / "A001__1.npy", np.zeros((5, 3), np.float32))  # D taken from the meta records without manifest
    report = diagnose_extraction(folder, progress=False)
    assert [p.kind for p in report.splits[0].problems] == ["manifest", "dim"] and report.feature_dim == 8


def test_doctor_on_a_real_extraction(tmp_path, capsys):
    """`adplg extract`'s own output (tiny random CLIP, 1 crop) is healthy; deleting a meta record is found."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from backbone_weights import write_random_clip
    from media import write_video

    from adplg.features.extract import extract_many
    from adplg.features.extractors import build_extractor

    videos = [write_video(tmp_path / "Abuse001_x264.mp4", 34, seed=1), write_video(tmp_path / "b.mp4", 20, seed=2)]
    extractor = build_extractor("clip", write_random_clip(tmp_path / "w.pt", seed=0, width=32, layers=1), crops=1)
    out = tmp_path / "features"
    extract_many(videos, extractor, out, progress=False)
    assert _run([str(out), "--quiet"]) == 0
    assert "verdict: HEALTHY (extraction folder)" in capsys.readouterr().out
    (out / "meta" / "b.json").unlink()
    assert _run([str(out), "--quiet"]) == 1
    out_text = capsys.readouterr().out
    assert "video 'b' has 1 crop file(s) but no meta record" in out_text
