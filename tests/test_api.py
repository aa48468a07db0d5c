"""Issue 9: the Python front door (``adplg.train`` -> ``adplg.load`` -> ``Scorer.score`` on a video), one snippet
layout for ``score`` and ``test``, real timestamps in timelines, and which config builds a checkpoint's model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from backbone_weights import write_random_clip
from media import write_timed_video, write_video

import adplg
from adplg.cli.main import main
from adplg.conventions import SNIPPET_FRAMES
from adplg.data.extraction import TIME_FROM_PTS
from adplg.data.synthetic import generate_synthetic_ucf
from adplg.errors import AdplgError

REPO = Path(__file__).resolve().parents[1]


def test_help_shows_the_api():
    proc = subprocess.run([sys.executable, "-c", "import adplg; help(adplg)"], capture_output=True, text=True,
                          env={"PAGER": "cat", "PATH": "/usr/bin:/bin"}, check=True)
    for name in ("adplg.load(", "adplg.train(", "scorer.score(", "adplg.calibrate(", "adplg.extract(", "Scorer",
                 "TrainResult", "Timeline"):
        assert name in proc.stdout, name


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A tiny model on 512-d (CLIP-sized) synthetic features, trained through ``adplg.train``."""
    root = tmp_path_factory.mktemp("api")
    data = generate_synthetic_ucf(root / "data", num_train_normal=8, num_train_abnormal=8, num_test_normal=6,
                                  num_test_abnormal=4, feature_dim=512, crops=1, max_snippets=60, seed=2)
    run = adplg.train("demo-cpu-small", overrides=[
        f"data.list_dir={data.root}", "data.feature_dim=512", "data.train_crops=1", "data.test_crops=1",
        f"output_dir={root / 'runs'}", "train.progress=false", "train.batch_size=4", "train.num_iters=40",
        "train.warm_up=10", "train.eval_every=40", "train.log_every=20"])
    weights = write_random_clip(root / "ViT-B-16.pt", seed=1, width=32, layers=1)
    return run, data, weights


def test_train_then_score_a_video_through_the_api(clip_run, tmp_path):
    run, data, weights = clip_run
    assert run.checkpoint.is_file() and (run.run_dir / "config.yaml").is_file()
    assert 0.0 <= run.metrics["auc"] <= 1.0 and run.config.data.feature_dim == 512

    video = write_video(tmp_path / "shop.mp4", 3 * SNIPPET_FRAMES + 5, width=64, height=48, fps=25, seed=1)
    scorer = adplg.load(run.run_dir)  # a run directory means its last checkpoint
    assert scorer.checkpoints == [run.run_dir] and scorer.rules.on_threshold == 0.5
    timelines = scorer.score(video, weights=weights, features_dir=tmp_path / "features")
    (t,) = timelines
    assert t.name == "shop" and t.snippet_scores.shape == (3,) and t.frame_scores.shape == (3 * SNIPPET_FRAMES,)
    assert t.fps == 25 and t.time_source == TIME_FROM_PTS == "pts"  # the extraction record's wording
    assert np.allclose(t.times_s, np.arange(3 * SNIPPET_FRAMES) / 25, atol=1e-3)
    features = np.load(tmp_path / "features" / "shop.npy")
    assert np.allclose(scorer.score_array(features), t.snippet_scores, atol=1e-6)

    summary = scorer.save(timelines, tmp_path / "scores")
    assert summary["videos"][0]["video"] == "shop" and (tmp_path / "scores" / "shop.png").is_file()
    record = json.loads((tmp_path / "scores" / "shop.json").read_text())
    assert np.allclose(record["score"], t.frame_scores, atol=1e-6)

    normal = sorted((data.root / "test" / "Testing_Normal_Videos_Anomaly").glob("*.npy"))
    rules = adplg.calibrate(scorer, normal, target_far=0.05, save_to=tmp_path / "rules.yaml", fps=30)
    assert (tmp_path / "rules.yaml").is_file() and rules.calibration["achieved_far"] <= 0.05
    assert scorer.rules is rules and "footage_note" in rules.calibration  # 6 short videos: little footage


def test_variable_frame_rate_timeline_uses_the_container_clock(clip_run, tmp_path):
    """Point 4: a clip whose frames are 40 ms, then 200 ms apart; times and alert segments are the container's."""
    run, _, weights = clip_run
    gaps = [40] * 16 + [200] * 16 + [40] * 4
    pts = np.concatenate([[0], np.cumsum(gaps)]).astype(int)  # 37 frames -> 2 snippets
    video = write_timed_video(tmp_path / "vfr.mkv", pts, rate=25)
    (t,) = adplg.load(run.checkpoint).score(video, weights=weights)
    assert t.time_source == TIME_FROM_PTS == "pts"  # the extraction record's wording
    assert t.times_s[SNIPPET_FRAMES] == pytest.approx(pts[16] / 1000, abs=1e-3)  # 0.64 s, as 16 / 25
    assert t.times_s[-1] > 3.0 and t.duration_s == pytest.approx(pts[32] / 1000, abs=1e-3)  # 3.84 s, not 1.28 s
    _, segments = t.alerts(adplg.AlertRules(on_threshold=0.0))
    assert len(segments) == 1 and segments[0].end_s == pytest.approx(t.duration_s)


# ---------------------------------------------------------------------------------- point 3: one snippet layout
def test_score_and_test_give_the_same_frame_scores(tiny_checkpoint, tmp_path):
    """``adplg score`` used to repeat every snippet over 16 frames whatever ``data.layout`` said."""
    from adplg.data.datasets import build_test_set
    from adplg.evaluation.evaluate import frame_scores

    checkpoint, data = tiny_checkpoint(64)
    layout = "data.layout.frames_per_snippet=24"  # not the default 16; longer, so the annotations still fit
    result = adplg.test(checkpoint, overrides=[f"data.list_dir={data.root}", "train.progress=false", layout],
                        out_dir=tmp_path / "test", plot=False)
    test_set = build_test_set(result.config, progress=False)
    expected = frame_scores(test_set, result.snippet_scores)

    scorer = adplg.load(checkpoint, overrides=[layout])
    assert scorer.config.data.layout.frames_per_snippet == 24
    timelines = {t.name: t for t in scorer.score([item.path for item in test_set.store.items], fps=30)}
    got = np.concatenate([timelines[v.name].frame_scores for v in test_set.videos])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    first = timelines[test_set.videos[0].name]
    assert len(first.frame_scores) == 24 * len(first.snippet_scores)


# ------------------------------------------------------------------------- point 5: which config builds the model
def test_our_checkpoint_keeps_its_config_under_any_preset(tiny_checkpoint, tmp_path, capsys):
    checkpoint, data = tiny_checkpoint(64)
    out = tmp_path / "xd"
    code = main(["test", "--preset", "xd-i3d", "--model_file", str(checkpoint), "--out", str(out), "--no_plot",
                 f"data.list_dir={data.root}", "data.format=ucf", "data.test_list=UCF_Test.list",
                 "data.annotations=UCF_Annotation.txt", "data.annotation_format=ucf", "data.test_crops=1",
                 "train.progress=false"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "results.json").read_text())["config"]
    assert saved["data"]["feature_dim"] == 64 and saved["model"]["model_dim"] != 1024  # the checkpoint's model

    # the official script builds the preset's model for .pkl files only: ours still uses its own config
    proc = subprocess.run([sys.executable, str(REPO / "ucf_test.py"), "--model_file", str(checkpoint),
                           "--list_dir", str(data.root), "data.test_crops=1", "train.progress=false"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "auc" in proc.stdout


def test_a_pkl_under_the_wrong_preset_does_not_fit(tmp_path, capsys):
    from adplg.models import SnippetBranch
    from adplg.models.convert import _NET_S_MAP

    ours = SnippetBranch(in_dim=1024).state_dict()
    pkl = tmp_path / "ucf_model_s_1.pkl"
    torch.save({key: ours[our_key].reshape(shape).clone() for key, (our_key, shape) in _NET_S_MAP.items()}, pkl)
    with pytest.raises(AdplgError, match="weights do not fit"):
        adplg.load(pkl, preset="ucf-clip")
    assert adplg.load(pkl, preset="ucf-i3d").config.data.feature_dim == 1024
    assert main(["test", "--preset", "ucf-clip", "--model_file", str(pkl)]) == 2
    err = capsys.readouterr().err
    assert "ucf_model_s_1.pkl" in err and "weights do not fit" in err and "Traceback" not in err
    assert len(err.splitlines()) < 5
