"""Alert rules: hysteresis, merging, minimum duration, calibration to a target false-alarm rate, the rules file."""

import numpy as np
import pytest

from adplg.alert_rules import AlertRules, alert_mask, alert_segments, hysteresis_mask
from adplg.errors import AdplgError
from adplg.inference.alerts import resolve_rules, rules_path_for
from adplg.inference.calibration import calibrate, false_alarm_rate


def test_hysteresis_starts_at_on_and_ends_below_off():
    s = np.array([0.1, 0.6, 0.45, 0.35, 0.45, 0.7, 0.2, 0.45])
    assert hysteresis_mask(s, 0.5, 0.4).tolist() == [False, True, True, False, False, True, False, False]
    assert hysteresis_mask(s, 0.5, 0.5).tolist() == (s >= 0.5).tolist()
    assert not hysteresis_mask(np.array([0.45, 0.45]), 0.5, 0.4).any()  # starts off: needs a crossing of `on`


def test_merge_gap_and_minimum_duration_in_seconds():
    fps = 10.0
    s = np.zeros(100)
    s[10:20] = 0.9  # 1.0 s
    s[23:30] = 0.9  # gap 0.3 s, then 0.7 s
    s[60:62] = 0.9  # 0.2 s, isolated
    plain = alert_segments(s, fps, AlertRules(on_threshold=0.5))
    assert [(g.start_frame, g.end_frame) for g in plain] == [(10, 20), (23, 30), (60, 62)]
    merged = alert_segments(s, fps, AlertRules(on_threshold=0.5, merge_gap_s=0.3))
    assert [(g.start_frame, g.end_frame) for g in merged] == [(10, 30), (60, 62)]
    assert merged[0].start_s == pytest.approx(1.0) and merged[0].end_s == pytest.approx(3.0)
    kept = alert_segments(s, fps, AlertRules(on_threshold=0.5, merge_gap_s=0.3, min_duration_s=0.5))
    assert [(g.start_frame, g.end_frame) for g in kept] == [(10, 30)]
    assert kept[0].peak_score == pytest.approx(0.9) and 0 < kept[0].mean_score < 0.9  # the merged gap counts
    assert not alert_segments(s, fps, AlertRules(on_threshold=0.5, min_duration_s=1.5))


def _normal_videos(rng, count):
    """Score traces of normal videos: smooth AR(1) noise around a per-video level, like a camera's quiet hours."""
    videos = []
    for _ in range(count):
        n = int(rng.integers(400, 2000))
        level, noise = rng.uniform(0.05, 0.3), np.zeros(n)
        eps = rng.normal(0, 0.05, n)
        for i in range(1, n):
            noise[i] = 0.95 * noise[i - 1] + eps[i]
        videos.append((np.clip(level + noise, 0, 1), float(rng.choice([25.0, 30.0]))))
    return videos


@pytest.mark.parametrize("target, hysteresis, min_dur, gap", [(0.01, 0.0, 0.0, 0.0), (0.02, 0.05, 0.5, 1.0)])
def test_calibration_meets_target_on_held_out_normal_videos(target, hysteresis, min_dur, gap):
    rng = np.random.default_rng(0)
    calibration, held_out = _normal_videos(rng, 150), _normal_videos(rng, 150)
    rules = calibrate(calibration, target, hysteresis, min_dur, gap)
    c = rules.calibration
    assert c["achieved_far"] <= target and c["achieved_far"] > 0.5 * target  # the lowest threshold that meets it
    assert rules.off_threshold == pytest.approx(rules.on_threshold - hysteresis)
    low, high = c["far_95_prediction_interval"]
    held = false_alarm_rate(held_out, rules)
    assert low <= held <= high, (held, low, high)
    assert c["hours"] > 0.5 and "footage_note" not in c  # 150 videos, over an hour: no note
    # one step lower on the candidate scores would break the target on the calibration set
    lower = rules.with_thresholds(rules.on_threshold - 1e-3, rules.off_threshold - 1e-3)
    assert false_alarm_rate(calibration, lower) > target


def test_little_footage_without_false_alarms_has_an_honest_interval():
    """~0.03 h (108 s) of quiet footage and no false alarm at the chosen threshold: resampling the videos alone says
    0%-0%; the binomial bound over 108 s / 10 s = 10.8 units says up to 1 - 0.025 ** (1 / 10.8), about 29%."""
    videos = [(np.full(36 * 30, level), 30.0) for level in (0.1, 0.15, 0.2)]  # any threshold <= 0.2 alerts 1/3+
    rules = calibrate(videos, 0.01)
    c = rules.calibration
    assert c["achieved_far"] == 0.0 and c["hours"] == pytest.approx(0.03)
    assert c["interval_unit_s"] == 10.0 and c["interval_units"] == pytest.approx(10.8)
    low, high = c["far_95_prediction_interval"]
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10.8)) and high > 0.2
    assert "little footage" in c["footage_note"] and "3 normal video(s)" in c["footage_note"]
    # long alerts make fewer independent units: a 60 s video with one 20 s false alarm counts as 3 units
    busy = np.zeros(60 * 10)
    busy[100:300] = 0.9
    rules = calibrate([(busy, 10.0)], 0.5)
    c = rules.calibration
    assert c["achieved_far"] == pytest.approx(1 / 3) and c["interval_unit_s"] == pytest.approx(20.0)
    assert c["interval_units"] == pytest.approx(3.0)
    low, high = c["far_95_prediction_interval"]
    assert low < 0.05 and high > 0.9  # one false alarm in 3 units says little


def test_calibration_with_hysteresis_above_the_low_scores():
    """Only thresholds with ``on - hysteresis >= 0`` are searched (normal footage scores near 0 must not give a
    negative off threshold, nor an error about an off threshold nobody gave)."""
    videos = [(np.linspace(0, 1, 50), 10.0)]
    rules = calibrate(videos, 0.9, hysteresis=0.3)
    assert rules.on_threshold >= 0.3 and rules.off_threshold == rules.on_threshold - 0.3
    assert false_alarm_rate(videos, rules) <= 0.9
    quiet = [(np.full(300, 0.002), 30.0), (np.linspace(0, 0.01, 300), 30.0)]  # all below the hysteresis
    rules = calibrate(quiet, 0.05, hysteresis=0.05, min_duration_s=2, merge_gap_s=3)
    assert rules.on_threshold == 0.05 and rules.off_threshold == 0.0 and rules.calibration["achieved_far"] == 0.0
    with pytest.raises(AdplgError, match=r"hysteresis >= 0 and <= 1") as caught:
        calibrate(videos, 0.0, hysteresis=2.0)  # no threshold in [0, 1] leaves off = on - 2 >= 0
    assert caught.value.parameter == "hysteresis"


def test_calibration_errors_and_zero_target():
    with pytest.raises(AdplgError, match="no normal videos"):
        calibrate([], 0.01)
    with pytest.raises(AdplgError, match="target false-alarm rate"):
        calibrate([(np.zeros(10), 30.0)], 1.5)
    rules = calibrate([(np.linspace(0, 1, 50), 10.0)], 0.0)
    assert rules.on_threshold > 1.0 and rules.calibration["achieved_far"] == 0.0


def test_rules_file_round_trip_and_errors(tmp_path):
    rules = AlertRules(on_threshold=0.7, off_threshold=0.6, min_duration_s=2.0, merge_gap_s=1.5,
                       calibration={"target_far": 0.01})
    path = rules.save(tmp_path / "last.alerts.yaml")
    assert AlertRules.load(path) == rules
    assert "not part of any exported graph" in path.read_text()
    (tmp_path / "bad.yaml").write_text("on_threshold: 0.5\nthreshhold: 2\n")
    with pytest.raises(AdplgError, match="unknown keys.*threshhold"):
        AlertRules.load(tmp_path / "bad.yaml")
    with pytest.raises(AdplgError, match="off_threshold <= on_threshold"):
        AlertRules(on_threshold=0.5, off_threshold=0.6)
    with pytest.raises(AdplgError, match="not found"):
        AlertRules.load(tmp_path / "missing.yaml")
    checkpoints = tmp_path / "checkpoints"
    assert rules_path_for(checkpoints / "last.safetensors") == checkpoints / "last.alerts.yaml"
    assert rules_path_for(tmp_path / "ucf_model_s_best.pkl").name == "ucf_model_s_best.alerts.yaml"


def test_alert_mask_rejects_bad_fps():
    with pytest.raises(AdplgError, match="fps > 0"):
        alert_mask(np.zeros(3), 0, AlertRules())


# ------------------------------------------------------------------------------------------------ which rules apply
def test_resolve_rules_precedence(tmp_path):
    """Lowest first: the model's rules, a rules file (replaces them whole), then each value given (replaces that
    value; the calibration record is kept). The source names the file and the values given, by their labels."""
    model = AlertRules(on_threshold=0.7, off_threshold=0.6, min_duration_s=2.0, merge_gap_s=1.0,
                       calibration={"target_far": 0.01})
    assert resolve_rules(model, "ckpt.alerts.yaml") == (model, "ckpt.alerts.yaml")
    rules, source = resolve_rules(model, "ckpt.alerts.yaml", on_threshold=0.3)
    assert (rules.on_threshold, rules.off_threshold, rules.min_duration_s, rules.merge_gap_s) == (0.3, 0.3, 2.0, 1.0)
    assert rules.calibration == {"target_far": 0.01} and source == "ckpt.alerts.yaml with on_threshold 0.3"
    rules, _ = resolve_rules(model, "ckpt", min_duration_s=0.5)  # the thresholds stay the model's, hysteresis too
    assert (rules.on_threshold, rules.off_threshold, rules.min_duration_s) == (0.7, 0.6, 0.5)

    camera = AlertRules(on_threshold=0.9, off_threshold=0.8, merge_gap_s=3.0).save(tmp_path / "cam.alerts.yaml")
    rules, source = resolve_rules(model, "ckpt", alerts_file=camera)
    assert rules == AlertRules.load(camera) and source == str(camera)  # the file wins over the model, whole
    rules, source = resolve_rules(model, "ckpt", alerts_file=camera, off_threshold=0.5, merge_gap_s=0.0,
                                  labels={"off_threshold": "--off-threshold"})
    assert (rules.on_threshold, rules.off_threshold, rules.min_duration_s, rules.merge_gap_s) == (0.9, 0.5, 0.0, 0.0)
    assert source == f"{camera} with --off-threshold 0.5, merge_gap_s 0"
    with pytest.raises(AdplgError, match="off_threshold <= on_threshold") as caught:
        resolve_rules(model, "ckpt", off_threshold=0.8)
    assert caught.value.parameter == "off_threshold"
    with pytest.raises(AdplgError, match="^on_threshold: alert rules: expected on_threshold >= 0") as caught:
        resolve_rules(model, "ckpt", on_threshold=float("nan"))
    with pytest.raises(AdplgError, match="not found"):
        resolve_rules(model, "ckpt", alerts_file=tmp_path / "missing.yaml")


def test_errors_name_parameters_and_a_rules_file_its_keys(tmp_path):
    """Library errors name the parameter (the command line swaps in its flag); a bad value in a rules file is about
    the file's key, not a parameter."""
    with pytest.raises(AdplgError) as caught:
        AlertRules(on_threshold=0.5, min_duration_s=-1)
    assert caught.value.parameter == "min_duration_s" and "--" not in str(caught.value)
    assert str(caught.value) == ("min_duration_s: alert rules: expected min_duration_s >= 0, a finite number, "
                                 "got -1")
    with pytest.raises(AdplgError) as caught:
        calibrate([(np.zeros(10), 30.0)], 1.5)
    assert caught.value.parameter == "target_far" and "(the target false-alarm rate)" in str(caught.value)
    path = tmp_path / "bad.alerts.yaml"
    path.write_text("on_threshold: 2\n")
    with pytest.raises(AdplgError) as caught:
        AlertRules.load(path)
    assert caught.value.parameter is None
    assert str(caught.value) == f"alert rules file {path}: expected on_threshold >= 0 and <= 1, a finite number, got 2"
