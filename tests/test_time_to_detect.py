"""Time to detect (adplg.evaluation.detection): hand-made scores where the answer is known, the false-alarm threshold
against a brute-force search, the live raise frame against OnlineAlerts, and what `adplg test` writes."""

import json
import math

import numpy as np
import pytest

from adplg.alert_rules import AlertRules, alert_mask
from adplg.errors import AdplgError
from adplg.evaluation.detection import alert_raise_frames, anomaly_intervals, describe, detection_frames, time_to_detect

FPS = 10.0
LOW, HIGH = 0.1, 0.9


def normal_videos(count: int = 3, frames: int = 100) -> list[np.ndarray]:
    return [np.full(frames, LOW) for _ in range(count)]


def abnormal(frames: int = 100, interval=(50, 80), alerts=()) -> tuple[np.ndarray, np.ndarray]:
    """Scores LOW except HIGH over each ``[a, b)`` of ``alerts``; GT 1 over ``interval``."""
    scores, gt = np.full(frames, LOW), np.zeros(frames, dtype=np.int64)
    gt[interval[0]:interval[1]] = 1
    for a, b in alerts:
        scores[a:b] = HIGH
    return scores, gt


def run(videos: list[tuple[np.ndarray, np.ndarray]], **options) -> dict:
    normals = normal_videos()
    scores = normals + [s for s, _ in videos]
    gt = [np.zeros(len(s), dtype=np.int64) for s in normals] + [g for _, g in videos]
    labels = [0] * len(normals) + [1] * len(videos)
    return time_to_detect(scores, gt, labels, FPS, **options)


def test_a_detection_two_seconds_after_the_start():
    result = run([abnormal(alerts=[(70, 90)])])
    assert set(result) == {"far_1%", "far_5%"}
    for entry in result.values():
        assert entry["intervals"] == entry["detected"] == 1 and entry["detected_share"] == 1.0
        assert entry["median_s"] == pytest.approx(2.0) and entry["p90_s"] == pytest.approx(2.0)
        # the normal videos score LOW everywhere: the lowest threshold that keeps them quiet is just above LOW
        assert LOW < entry["on_threshold"] < 0.1000001 and entry["achieved_far"] == 0.0


def test_a_missed_interval_counts_in_the_share_not_in_the_times():
    result = run([abnormal(alerts=[(70, 90)]), abnormal()])["far_1%"]
    assert result["intervals"] == 2 and result["detected"] == 1 and result["detected_share"] == 0.5
    assert result["median_s"] == pytest.approx(2.0)
    none = run([abnormal()])["far_5%"]
    assert none["detected"] == 0 and none["detected_share"] == 0.0
    assert math.isnan(none["median_s"]) and math.isnan(none["p90_s"])
    assert "0/1 intervals detected (0%)" in describe(run([abnormal()]))


def test_an_alert_before_the_start_is_a_false_alarm_not_an_early_detection():
    # an alert over frames 20-29 ends before the interval (50-79): the interval is detected by the one at 60, 1 s in
    result = run([abnormal(alerts=[(20, 30), (60, 65)])])["far_1%"]
    assert result["detected"] == 1 and result["median_s"] == pytest.approx(1.0)
    # only the early alert: missed
    assert run([abnormal(alerts=[(20, 30)])])["far_1%"]["detected"] == 0
    # an alert still on at the start (raised at 40) detects the interval at its first frame: time 0, never negative
    assert run([abnormal(alerts=[(40, 55)])])["far_1%"]["median_s"] == 0.0


def test_several_intervals_per_video_and_the_intervals_of_a_gt():
    gt = np.zeros(100, dtype=np.int64)
    gt[10:20] = gt[60:70] = 1
    assert anomaly_intervals(gt).tolist() == [[10, 20], [60, 70]]
    scores = np.full(100, LOW)
    scores[15:17] = scores[69:72] = HIGH  # 0.5 s into the first, 0.9 s into the second
    rules = AlertRules(on_threshold=0.5)
    assert detection_frames(scores, FPS, rules, anomaly_intervals(gt)).tolist() == [15, 69]
    result = run([(scores, gt)])["far_1%"]
    assert result["intervals"] == 2 and result["median_s"] == pytest.approx(0.7)
    assert result["p90_s"] == pytest.approx(0.5 + 0.9 * 0.4)  # linear interpolation between 0.5 and 0.9


def test_latency_is_added_to_every_time():
    videos = [abnormal(alerts=[(70, 90)]), abnormal(alerts=[(55, 90)])]  # 2.0 s and 0.5 s
    assert run(videos, latency_s=0.3)["far_1%"]["median_s"] == pytest.approx((2.3 + 0.8) / 2)
    per_video = run(videos, latency_s=[0, 0, 0, 1.0, 0.0])["far_5%"]  # 3 normal videos first
    assert sorted([per_video["median_s"]]) == [pytest.approx((3.0 + 0.5) / 2)]
    assert per_video["latency_s"] == pytest.approx(0.5)  # mean over the abnormal videos


def test_the_threshold_is_the_lowest_that_keeps_the_target_rate_after_the_rules():
    rng = np.random.default_rng(0)
    # correlated normal scores: runs above a threshold, so hysteresis, merging and minimum duration all matter
    normals = [np.clip(np.convolve(rng.random(400), np.ones(9) / 9, mode="same") + rng.normal(0, 0.05, 400), 0, 1)
               for _ in range(4)]
    rules = AlertRules(on_threshold=0.5, off_threshold=0.45, min_duration_s=0.5, merge_gap_s=0.3)
    abnormal_scores, gt = abnormal(400, (100, 200), alerts=[(150, 200)])
    videos = normals + [abnormal_scores]
    labels = [0, 0, 0, 0, 1]
    gts = [np.zeros(400, dtype=np.int64)] * 4 + [gt]
    result = time_to_detect(videos, gts, labels, FPS, rules, target_fars=(0.01, 0.05, 0.2))

    def rate(on: float) -> float:
        candidate = rules.with_thresholds(on, on - 0.05)
        return float(np.mean(np.concatenate([alert_mask(s, FPS, candidate) for s in normals])))

    candidates = np.unique(np.concatenate(normals))
    for target in (0.01, 0.05, 0.2):
        entry = result[f"far_{target * 100:g}%"]
        on = entry["on_threshold"]
        assert entry["off_threshold"] == pytest.approx(on - 0.05)  # the hysteresis gap is kept
        assert entry["min_duration_s"] == 0.5 and entry["merge_gap_s"] == 0.3
        assert entry["achieved_far"] == pytest.approx(rate(on)) and entry["achieved_far"] <= target
        brute = next(c for c in candidates[candidates >= 0.05] if rate(c) <= target)  # a linear scan
        assert on == brute
    assert result["far_1%"]["on_threshold"] > result["far_5%"]["on_threshold"] > result["far_20%"]["on_threshold"]


def test_the_raise_frame_is_where_streaming_alerts_start():
    from adplg.inference.online_alerts import OnlineAlerts

    rng = np.random.default_rng(1)
    scores = np.clip(np.convolve(rng.random(3000), np.ones(5) / 5, mode="same"), 0, 1)
    for rules in (AlertRules(on_threshold=0.6), AlertRules(on_threshold=0.6, off_threshold=0.5, min_duration_s=0.35),
                  AlertRules(on_threshold=0.6, off_threshold=0.55, min_duration_s=0.8, merge_gap_s=0.4)):
        runs, raised = alert_raise_frames(scores, FPS, rules)
        online = OnlineAlerts(rules, FPS)
        started = []
        for i, s in enumerate(scores):
            started += [e.end_frame - 1 for e in online.push(np.array([s])) if e.kind == "started"]
        online.close()
        assert len(runs) > 5 and started == raised.tolist()
        assert [[g.start_frame, g.end_frame] for g in online.segments()] == runs.tolist()
        if rules.min_duration_s:
            assert (raised - runs[:, 0] >= math.ceil(rules.min_duration_s * FPS) - 1).all()


def test_a_minimum_duration_delays_the_detection_to_the_raise():
    rules = AlertRules(on_threshold=0.5, min_duration_s=1.0)  # an alert is certain once it lasted 10 frames
    result = run([abnormal(alerts=[(60, 95)])], rules=rules)["far_1%"]
    assert result["median_s"] == pytest.approx(1.9)  # raised at frame 69: 1 s of alert less one frame, 1.9 s in
    assert run([abnormal(alerts=[(45, 95)])], rules=rules)["far_1%"]["median_s"] == pytest.approx(0.4)  # raised at 54
    assert run([abnormal(alerts=[(60, 65)])], rules=rules)["far_1%"]["detected"] == 0  # too short: no alert


def test_without_normal_videos_there_is_no_threshold():
    scores, gt = abnormal(alerts=[(70, 90)])
    entry = time_to_detect([scores], [gt], [1], FPS)["far_1%"]
    assert math.isnan(entry["on_threshold"]) and math.isnan(entry["detected_share"]) and entry["detected"] == 0
    assert "no normal test video" in entry["note"] and "no normal test video" in describe({"far_1%": entry})


@pytest.mark.parametrize(("change", "parameter"), [
    ({"frame_gt": [np.full(5, 2)]}, "frame_gt"),
    ({"frame_gt": []}, "frame_gt"),
    ({"frame_scores": [np.zeros(7)]}, "frame_scores"),
    ({"frame_scores": [np.full(5, np.nan)]}, "frame_scores"),
    ({"video_labels": [2]}, "video_labels"),
    ({"fps": 0}, "fps"),
    ({"target_fars": (1.0,)}, "target_far"),
    ({"latency_s": -1.0}, "latency_s"),
    ({"latency_s": [0.0, 1.0]}, "latency_s"),
])
def test_bad_inputs_name_their_parameter(change, parameter):
    args = {"frame_scores": [np.zeros(5)], "frame_gt": [np.array([0, 1, 1, 0, 0])], "video_labels": [1], "fps": 30.0,
            **change}
    with pytest.raises(AdplgError) as caught:
        time_to_detect(**args)
    assert caught.value.parameter == parameter


def test_scores_outside_zero_one_are_refused():
    with pytest.raises(AdplgError, match=r"time to detect: expected normal footage scores in \[0, 1\]"):
        time_to_detect([np.full(5, 2.0)], [np.zeros(5)], [0], 30.0)


def test_adplg_test_writes_and_prints_the_time_to_detect(tiny_checkpoint, tmp_path, capsys):
    from adplg.cli.main import main

    checkpoint, data = tiny_checkpoint(64)
    out = tmp_path / "test"
    assert main(["test", "--model_file", str(checkpoint), f"data.list_dir={data.root}", "--out", str(out),
                 "--no_plot", "train.progress=false", "eval.alert_min_duration_s=0.5"]) == 0
    written = json.loads((out / "results.json").read_text())
    detection = written["time_to_detect"]
    assert set(detection) == {"far_1%", "far_5%"}
    for target, entry in zip((0.01, 0.05), detection.values()):
        assert entry["target_far"] == target and entry["achieved_far"] <= target
        assert entry["fps"] == 30.0 and entry["min_duration_s"] == 0.5 and entry["latency_s"] == 0.0
        assert entry["intervals"] >= 4 and 0 <= entry["detected"] <= entry["intervals"]
    assert detection["far_5%"]["on_threshold"] <= detection["far_1%"]["on_threshold"]
    assert set(written["metrics"]) >= {"auc", "ap", "far"}  # the frame metrics are unchanged beside it
    printed = capsys.readouterr().out
    assert "time to detect FAR 1%: " in printed and "; FAR 5%: " in printed


def test_the_gt_frame_rate_follows_the_dataset():
    from adplg.config import build_config

    assert build_config("ucf-i3d").data.gt_fps == 30.0
    assert build_config("xd-i3d").data.gt_fps == build_config("xd-clip").data.gt_fps == 24.0
    assert build_config("xd-i3d", overrides=["data.fps=25"]).data.gt_fps == 25.0
