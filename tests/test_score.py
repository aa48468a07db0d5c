"""`adplg score` and `adplg calibrate` on feature files: timelines, alert segments, plots, calibrated rules."""

import csv
import json
import shutil

import numpy as np
import pytest

from adplg.alert_rules import AlertRules
from adplg.cli.main import main


@pytest.fixture(scope="module")
def trained(tiny_checkpoint):
    return tiny_checkpoint(64)


def _normal_files(data):
    return sorted((data.root / "test" / "Testing_Normal_Videos_Anomaly").glob("*.npy"))


def test_score_writes_timeline_segments_and_plot(trained, tmp_path):
    ckpt, data = trained
    abnormal = sorted(p for p in (data.root / "test").iterdir() if p.is_dir() and "Normal" not in p.name)[0]
    out = tmp_path / "scores"
    rc = main(["score", str(abnormal), "--checkpoint", str(ckpt), "--out", str(out), "--fps", "25",
               "--annotations", str(data.annotations), "--threshold", "0.3", "--min-duration", "0.2", "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alert_rules"]["on_threshold"] == 0.3 and summary["alert_rules"]["min_duration_s"] == 0.2
    videos = sorted(p.stem for p in abnormal.glob("*.npy"))
    assert [v["video"] for v in summary["videos"]] == videos
    for name in videos:
        T = np.load(abnormal / f"{name}.npy").shape[0]
        rows = list(csv.DictReader((out / f"{name}.csv").open()))
        assert len(rows) == 16 * T and rows[1]["time_s"] == "0.0400" and rows[-1]["frame"] == str(16 * T - 1)
        record = json.loads((out / f"{name}.json").read_text())
        assert record["fps"] == 25 and record["fps_source"] == "--fps" and len(record["score"]) == 16 * T
        scores, alert = np.array(record["score"]), np.array(record["alert"])
        assert np.all(scores[::16] == np.repeat(scores[::16], 1))  # one score per 16-frame snippet
        assert np.all(scores.reshape(T, 16) == scores.reshape(T, 16)[:, :1])
        covered = np.zeros(16 * T, dtype=int)
        for seg in record["segments"]:
            covered[seg["start_frame"]:seg["end_frame"]] = 1
            assert seg["duration_s"] >= 0.2 and seg["peak_score"] >= 0.3
            assert seg["start_s"] == pytest.approx(seg["start_frame"] / 25)
        assert covered.tolist() == alert.tolist() == [int(r["alert"]) for r in rows]
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_threshold_extremes_and_single_file_with_siblings(trained, tmp_path):
    ckpt, data = trained
    one = _normal_files(data)[0]
    for threshold, expected in (("0", 1), ("1", 0)):
        out = tmp_path / threshold
        assert main(["score", str(one), "--checkpoint", str(ckpt), "--out", str(out), "--threshold", threshold,
                     "--no-plot", "--quiet"]) == 0
        record = json.loads((out / f"{one.stem}.json").read_text())
        assert len(record["segments"]) == expected and record["fps_source"].startswith("assumed")
        assert not (out / f"{one.stem}.png").exists()


def test_calibrated_rules_hold_on_held_out_normal_videos(trained, tmp_path):
    ckpt, data = trained
    normal = _normal_files(data)
    calibration, held_out = tmp_path / "cal", tmp_path / "held"
    for folder, files in ((calibration, normal[::2]), (held_out, normal[1::2])):
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f.name)
    target = 0.05
    assert main(["calibrate", str(calibration), "--checkpoint", str(ckpt), "--target-far", str(target),
                 "--hysteresis", "0.01", "--min-duration", "0.3", "--merge-gap", "0.5", "--fps", "30",
                 "--quiet"]) == 0
    rules_file = ckpt.with_name("last.alerts.yaml")
    rules = AlertRules.load(rules_file)
    c = rules.calibration
    assert c["achieved_far"] <= target and c["videos"] == len(normal[::2])
    assert c["checkpoint_sha256"] and rules.off_threshold == pytest.approx(rules.on_threshold - 0.01)

    out = tmp_path / "held-scores"
    assert main(["score", str(held_out), "--checkpoint", str(ckpt), "--out", str(out), "--fps", "30", "--no-plot",
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alert_rules_source"] == str(rules_file)  # picked up beside the checkpoint
    alerted = sum(sum(json.loads((out / f"{v['video']}.json").read_text())["alert"]) for v in summary["videos"])
    frames = sum(v["frames"] for v in summary["videos"])
    low, high = c["far_95_prediction_interval"]
    assert low <= alerted / frames <= high, (alerted / frames, low, high)


def test_score_errors_name_the_problem(trained, tmp_path, capsys):
    ckpt, data = trained
    bad = tmp_path / "bad" / "video.npy"
    bad.parent.mkdir()
    np.save(bad, np.zeros((10, 32), dtype=np.float32))
    assert main(["score", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "64" in err and "32" in err
    assert main(["score", str(tmp_path / "nothing.npy"), "--checkpoint", str(ckpt)]) == 2
    assert "not found" in capsys.readouterr().err
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    assert main(["score", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path / "v")]) == 2
    assert "--weights" in capsys.readouterr().err


def test_help_has_examples(capsys):
    for command in ("score", "calibrate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_crops_are_grouped_by_the_manifest_naming_and_averaged(trained, tmp_path):
    import torch

    from adplg.checkpoints.load import load_snippet_branch

    ckpt, _ = trained
    rng = np.random.default_rng(0)
    crops = [rng.normal(size=(12, 64)).astype(np.float32) for _ in range(3)]
    folder = tmp_path / "sht-features"
    folder.mkdir()
    for c, array in enumerate(crops):
        np.save(folder / f"01_0014_{c}.npy", array)
    (folder / "manifest.json").write_text(json.dumps({"naming": "sht"}))
    out = tmp_path / "out"
    assert main(["score", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--no-plot", "--quiet"]) == 0
    record = json.loads((out / "01_0014.json").read_text())
    _, net_s = load_snippet_branch(ckpt)
    with torch.no_grad():
        expected = net_s(torch.from_numpy(np.stack(crops))).mean(0).numpy()
    assert np.allclose(np.array(record["score"])[::16], expected, atol=1e-6)
    assert len(record["features"]) == 3


def test_an_ensemble_scores_the_mean_of_its_members(trained, tmp_path):
    import torch

    from adplg.checkpoints.format import save_checkpoint
    from adplg.checkpoints.load import load_scorer, load_snippet_branch
    from adplg.models.build import build_video_branch

    ckpt, data = trained
    cfg, net_s = load_snippet_branch(ckpt)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net_s.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other = save_checkpoint(tmp_path / "other", net_v=build_video_branch(cfg), net_s=net_s, step=1,
                            config=cfg.to_dict())
    video = _normal_files(data)[0]
    runs = {}
    for name, checkpoints in (("a", [ckpt]), ("b", [other]), ("ab", [ckpt, other])):
        out = tmp_path / name
        assert main(["score", str(video), "--checkpoint", *map(str, checkpoints), "--out", str(out), "--no-plot",
                     "--quiet", "eval.precision=fp32"]) == 0
        runs[name] = np.array(json.loads((out / f"{video.stem}.json").read_text())["score"])
    assert not np.allclose(runs["a"], runs["b"])
    assert np.allclose(runs["ab"], (runs["a"] + runs["b"]) / 2, atol=1e-6)
    _, ensemble = load_scorer([ckpt, other])
    assert len(ensemble.members) == 2 and ensemble.max_len == net_s.max_len


def test_rule_flags_are_named_in_the_rules_source():
    """``score --threshold 0.3`` over the checkpoint's rules: the summary's ``alert_rules_source`` says the flag
    changed them, instead of naming the rules file alone."""
    from types import SimpleNamespace

    from adplg.alert_rules import AlertRules
    from adplg.cli.common import rules_from_args
    from adplg.cli.main import build_parser

    rules = AlertRules(on_threshold=0.7, off_threshold=0.6, min_duration_s=2.0, merge_gap_s=1.0)
    scorer = SimpleNamespace(rules=rules, rules_source="ckpt.alerts.yaml")
    command = ["score", "features.npy", "--checkpoint", "ckpt.safetensors"]
    rules, source = rules_from_args(build_parser().parse_args([*command, "--threshold", "0.3"]), scorer)
    assert (rules.on_threshold, rules.off_threshold, rules.min_duration_s) == (0.3, 0.3, 2.0)
    assert source == "ckpt.alerts.yaml with --threshold 0.3"
    assert rules_from_args(build_parser().parse_args(command), scorer)[1] == "ckpt.alerts.yaml"
