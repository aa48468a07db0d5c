"""Issue 14, items 4-8: every bad input is one clear ``AdplgError`` (``adplg: error: ...``, exit 2, no traceback)
naming the file or key, what was expected and what was given; half-extracted feature folders, empty folders, long
videos, relative list paths and data paths saved in a checkpoint are handled at their root."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from adplg.cli.main import main
from adplg.config import build_config
from adplg.data.lists import QUOTED_LINES, LineProblemsError, NotAListError, read_list
from adplg.errors import AdplgError


@pytest.fixture(scope="module")
def trained(tiny_checkpoint):
    return tiny_checkpoint(64)


def cli_error(capsys, argv):
    """Run the CLI; assert exit 2, no traceback, and return the error text."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "adplg: error:" in err
    return err


def one_video(data):
    return sorted((data.root / "test" / "Testing_Normal_Videos_Anomaly").glob("*.npy"))[0]


# ------------------------------------------------------------------------------------------- config (item 4)
@pytest.mark.parametrize("override, needles", [
    ("train.seed=[1", ["'train.seed=[1'", "not valid YAML", "'[1'"]),
    ("=3", ["'=3'", "section.key=value", "no key before '='"]),
    ("train.seed", ["'train.seed'", "section.key=value", "no '='"]),
    ("train..seed=1", ["'train..seed=1'", "empty part"]),
])
def test_malformed_overrides_name_the_override(capsys, override, needles):
    err = cli_error(capsys, ["train", "--preset", "demo-cpu-small", override])
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("content, needle", [(None, "got a directory"), ("- 1\n- 2\n", "got a list"),
                                             ("3\n", "got a int"), ("train: [1\n", "not valid YAML")])
def test_bad_config_files_name_the_file(capsys, tmp_path, content, needle):
    path = tmp_path / "user.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    err = cli_error(capsys, ["train", "--preset", "demo-cpu-small", "--config", str(path)])
    assert str(path) in err and needle in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("override, needles", [
    ("train.lr_v=-1", ["train.lr_v", "greater than 0", "-1"]),
    ("train.lr_s=0", ["train.lr_s", "greater than 0", "got 0"]),
    ("train.lr_v=.nan", ["train.lr_v", "finite", "nan"]),
    ("train.sch_step=0", ["train.sch_step", "greater than or equal to 1", "got 0"]),
    ("train.warm_up=600", ["train.warm_up", "train.num_iters", "untrained scoring branch", "600 >= num_iters 600"]),
])
def test_bad_training_numbers_name_the_key(capsys, override, needles):
    err = cli_error(capsys, ["train", "--preset", "demo-cpu-small", override])
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_checkpoint_config_is_read_without_the_training_checks():
    saved = build_config("demo-cpu-small").to_dict()
    saved["train"].update(num_iters=5, warm_up=200)  # e.g. a smoke run written before the check existed
    with pytest.raises(AdplgError, match="train.warm_up must be below train.num_iters"):
        build_config(base=saved)
    assert build_config(base=saved, training=False).train.warm_up == 200


# ------------------------------------------------------------------------------- checkpoint sidecars (item 4)
def _copy_checkpoint(ckpt, folder):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ckpt, folder / "m.safetensors")
    shutil.copy(ckpt.with_suffix(".json"), folder / "m.json")
    return folder / "m.safetensors"


@pytest.mark.parametrize("content, needle", [
    (b"\x00\xff\xfe binary \x80", "is not text (binary data)"),
    (b"{not json", "is not valid JSON"),
    (b"[1, 2, 3]", "got a JSON array"),
    (b'{"step": 1, "format": "adplg-checkpoint-1"}', "got no 'config' key"),
    (b'{"config": "ucf-i3d"}', "got 'config' as a JSON string"),
])
def test_bad_sidecars_name_the_sidecar(trained, tmp_path, capsys, content, needle):
    ckpt, data = trained
    weights = _copy_checkpoint(ckpt, tmp_path / "ck")
    weights.with_suffix(".json").write_bytes(content)
    err = cli_error(capsys, ["score", str(one_video(data)), "--checkpoint", str(weights), "--out",
                             str(tmp_path / "o")])
    assert f"checkpoint sidecar {weights.with_suffix('.json')}" in err and needle in err
    assert "expected the JSON object adplg writes" in err and len(err.strip().splitlines()) == 1


def test_unreadable_weights_do_not_quote_library_internals(trained, tmp_path, capsys):
    ckpt, data = trained
    weights = _copy_checkpoint(ckpt, tmp_path / "ck")
    weights.write_bytes(b"garbage" * 10)
    err = cli_error(capsys, ["score", str(one_video(data)), "--checkpoint", str(weights)])
    assert str(weights) in err and "unreadable or truncated" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------- item 7: a crafted sidecar cannot print a file
def test_a_crafted_sidecar_cannot_print_a_file(trained, tmp_path, capsys, caplog):
    ckpt, _ = trained
    weights = _copy_checkpoint(ckpt, tmp_path / "evil")
    secret_dir = tmp_path / "etc"
    secret_dir.mkdir()
    (secret_dir / "passwd").write_text("".join(f"user{i}:x:{i}:{i}:SECRET-{i}:/home/u{i}:/bin/sh\n" for i in range(30)))
    meta = json.loads(weights.with_suffix(".json").read_text())
    meta["config"]["data"].update(list_dir=str(secret_dir), test_list="passwd")
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO, logger="adplg"):
        err = cli_error(capsys, ["test", "--model_file", str(weights), "--out", str(tmp_path / "out")])
    assert "SECRET" not in err and "user0" not in err
    assert f"{secret_dir / 'passwd'} does not look like a list file of format 'ucf' (30 of 30 lines unreadable" in err
    # the saved data paths were not used silently
    used = [r.getMessage() for r in caplog.records if "data paths saved in the checkpoint" in r.getMessage()]
    assert used and f"data.list_dir={secret_dir}" in used[0] and "data.test_list=passwd" in used[0]


def test_list_errors_quote_a_few_lines_and_count_the_rest(tmp_path):
    good = [f"/f/Abuse/Abuse{i:03d}_x264.npy" for i in range(30)]
    bad = [f"SECRET line {i} " + "x" * 300 for i in range(10)]
    path = tmp_path / "mixed.list"
    path.write_text("\n".join(good + bad) + "\n")
    with pytest.raises(LineProblemsError) as exc:
        read_list(path, "ucf")
    text = str(exc.value)
    assert len(exc.value.problems) == 10  # every problem is kept for `adplg doctor`
    assert f"{path}: 10 problem(s)" in text and "... and 7 more" in text
    assert sum("SECRET" in line for line in text.splitlines()) == QUOTED_LINES
    assert "x" * 150 not in text  # quoted lines are cut short
    not_a_list = tmp_path / "notes.txt"
    not_a_list.write_text("\n".join(bad) + "\n")
    with pytest.raises(NotAListError) as exc:
        read_list(not_a_list, "sht")
    assert str(exc.value) == (f"{not_a_list} does not look like a list file of format 'sht' (10 of 10 lines "
                              f"unreadable; expected '<path>.npy [label]' per line)")


@pytest.mark.parametrize("fmt, line, video", [("ucf", "feats/Abuse001_x264__3.npy", "Abuse001_x264"),
                                              ("xd", "feats/v1__label_A__0.npy", "v1__label_A"),
                                              ("sht", "feats/01_0014_3.npy 1.0", "01_0014")])
def test_relative_list_paths_resolve_against_the_list_folder(tmp_path, monkeypatch, fmt, line, video):
    (tmp_path / "lists").mkdir()
    (tmp_path / "elsewhere").mkdir()
    list_file = tmp_path / "lists" / "a.list"
    list_file.write_text(line + "\n/abs/feats/other.npy\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    items = read_list(list_file, fmt)
    assert items[0].path == tmp_path / "lists" / line.split()[0] and items[0].video == video
    assert str(items[1].path) == "/abs/feats/other.npy"


# ------------------------------------------------------------------------------------------- numbers (item 5)
@pytest.mark.parametrize("flags, needles", [
    (["--threshold", "nan"], ["on_threshold", "--threshold", "finite", "nan"]),
    (["--threshold", "0.5", "--off-threshold", "0.8"], ["off_threshold <= on_threshold", "0.8", "0.5"]),
    (["--min-duration", "-1"], ["min_duration_s >= 0", "--min-duration", "-1"]),
    (["--merge-gap", "inf"], ["merge_gap_s", "--merge-gap", "inf"]),
    (["--fps", "inf"], ["fps > 0", "--fps", "inf"]),
    (["--fps", "nan"], ["fps > 0", "--fps", "nan"]),
    (["--fps", "0"], ["fps > 0", "--fps", "got 0"]),
])
def test_bad_score_numbers_are_refused(trained, tmp_path, capsys, flags, needles):
    ckpt, data = trained
    err = cli_error(capsys, ["score", str(one_video(data)), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
                             "--no-plot", "--quiet", *flags])
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.mark.parametrize("flags, needle", [(["--target-far", "nan"], "target_far"),
                                           (["--target-far", "1"], "target_far"),
                                           (["--target-far", "0.01", "--hysteresis", "nan"], "hysteresis")])
def test_bad_calibration_numbers_are_refused(trained, tmp_path, capsys, flags, needle):
    ckpt, data = trained
    err = cli_error(capsys, ["calibrate", str(one_video(data)), "--checkpoint", str(ckpt), "--out",
                             str(tmp_path / "rules.yaml"), "--quiet", *flags])
    assert needle in err and "finite number" in err and not (tmp_path / "rules.yaml").exists()


def test_the_library_refuses_bad_frame_rates_too(trained):
    import adplg
    from adplg.inference.scorer import score_inputs

    ckpt, data = trained
    scorer = adplg.load(ckpt, device="cpu")
    for fps in (float("inf"), float("nan"), -5.0):
        with pytest.raises(AdplgError, match="fps > 0"):
            scorer.score(one_video(data), fps=fps)
        with pytest.raises(AdplgError, match="fps > 0"):
            score_inputs(scorer.model, [one_video(data)], 64, fps=fps)
    with pytest.raises(AdplgError, match="target_far"):
        scorer.calibrate(one_video(data), float("nan"), save_to=False)


# ---------------------------------------------------------------------------- item 6: half-extracted videos
def _extract_folder(root, rng):
    """A folder as `adplg extract` leaves it when killed: 'done' finished (5 crops + record), 'cut' with 3 of its 5
    crops and its record, 'norec' with 2 crops and no record (the record is written last)."""
    root.mkdir()
    (root / "meta").mkdir()
    (root / "manifest.json").write_text(json.dumps({"backbone": "i3d", "crops": 5, "naming": "xd"}))
    for video, crops, record in (("done", 5, True), ("cut", 3, True), ("norec", 2, False)):
        for k in range(crops):
            np.save(root / f"{video}__{k}.npy", rng.normal(size=(6, 64)).astype(np.float32))
        if record:
            (root / "meta" / f"{video}.json").write_text(json.dumps(
                {"video": video, "fps": 25.0, "crops": 5, "crop_files": [f"{video}__{k}.npy" for k in range(5)]}))
    return root


def test_half_extracted_videos_are_refused_unless_allowed(trained, tmp_path, capsys):
    ckpt, _ = trained
    folder = _extract_folder(tmp_path / "feats", np.random.default_rng(0))
    for command in (["score", "--out", str(tmp_path / "o")], ["calibrate", "--target-far", "0.1", "--out",
                                                             str(tmp_path / "r.yaml")]):
        err = cli_error(capsys, [command[0], str(folder), "--checkpoint", str(ckpt), "--quiet", *command[1:]])
        assert "2 half-extracted video(s)" in err and str(folder) in err
        assert "cut: 3 of 5 crop files (missing cut__3.npy, cut__4.npy)" in err
        assert "norec: 2 crop file(s) but no extraction record meta/norec.json" in err and "norec__4.npy" in err
        assert "done" not in err.split(str(folder))[1].split(".")[0] and "--allow-incomplete" in err
        assert len(err.strip().splitlines()) == 1
    out = tmp_path / "ok"
    assert main(["score", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--no-plot", "--quiet",
                 "--allow-incomplete"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(v["video"] for v in summary["videos"]) == ["cut", "done", "norec"]


# ------------------------------------------------------------------------------------------------- item 8
def test_an_empty_folder_says_no_features_or_videos(trained, tmp_path, capsys):
    ckpt, _ = trained
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("nothing to score")
    for command in (["score"], ["calibrate", "--target-far", "0.1"]):
        err = cli_error(capsys, [*command, str(empty), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
        assert f"no .npy features or videos found in {empty}" in err and "weights" not in err


def test_videos_longer_than_max_len_are_scored_in_overlapping_windows(tmp_path):
    from adplg.inference.scorer import Scorer
    from adplg.models.build import build_snippet_branch

    cfg = build_config("demo-cpu-small", overrides=["model.max_len=8", "data.feature_dim=16", "data.test_crops=1",
                                                     "eval.precision=fp32"])
    torch.manual_seed(0)
    net = build_snippet_branch(cfg).eval()
    scorer = Scorer(cfg, net, [], device="cpu")
    x = np.random.default_rng(0).normal(size=(20, 16)).astype(np.float32)
    with pytest.raises(AdplgError, match="max_len"):  # the model alone refuses T > max_len
        net(torch.from_numpy(x)[None])
    scores = scorer.score_array(x)
    assert scores.shape == (20,) and np.all(np.isfinite(scores))
    with torch.no_grad():  # windows of 8 overlapping by 2: [0, 8), [6, 14), [12, 20)
        w = [net(torch.from_numpy(x[s:s + 8])[None])[0].numpy() for s in (0, 6, 12)]
    expected = np.concatenate([w[0][:6], (w[0][6:] + w[1][:2]) / 2, w[1][2:6], (w[1][6:] + w[2][:2]) / 2, w[2][2:]])
    assert np.allclose(scores, expected, atol=1e-6)
    assert np.allclose(scorer.score_array(x[:8]), w[0], atol=1e-6)  # up to max_len: one plain pass
    folder = tmp_path / "long"
    folder.mkdir()
    np.save(folder / "long_video.npy", x)
    (timeline,) = scorer.score(folder, fps=10)
    assert np.allclose(timeline.snippet_scores, scores, atol=1e-6)


def test_torch_advice_to_load_unsafely_never_appears(tmp_path, capsys):
    from adplg.models.backbones.weights import short_reason
    from adplg.models.convert import load_official_checkpoint

    numpy_pickle = tmp_path / "ucf_model_s_1.pkl"
    torch.save({"x": np.zeros(3)}, numpy_pickle)  # needs a non-tensor global: the weights-only load refuses it
    garbage = tmp_path / "ucf_model_s_2.pkl"
    garbage.write_bytes(b"not a pickle at all")
    for path, reason in ((numpy_pickle, "Unsupported global"), (garbage, "UnpicklingError")):
        with pytest.raises(AdplgError) as exc:
            load_official_checkpoint(path)
        text = str(exc.value)
        assert str(path) in text and reason in text and "weights_only" not in text and "False" not in text
        err = cli_error(capsys, ["test", "--preset", "ucf-i3d", "--model_file", str(path)])
        assert "weights_only" not in err and len(err.strip().splitlines()) == 1
    advice = RuntimeError("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` "
                          "will likely succeed, but it can result in arbitrary code execution.")
    assert "False" not in short_reason(advice) and short_reason(advice).startswith("RuntimeError: ")
