"""One clock offline (issue 25, points 3, 4, 7, 10): a variable-frame-rate video written with PyAV keeps every frame's
presentation time from extraction (``frame_pts``) through the timeline (no interpolation), calibration (real
duration), the score outputs and the report (measured frame rate, steps, dropped spans, codec notes)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from backbone_weights import write_random_clip
from media import write_timed_video

import adplg
from adplg.alert_rules import AlertRules
from adplg.data.extraction import TIME_FROM_PTS, decode_frame_pts, encode_frame_pts, read_video_record
from adplg.data.gt import SnippetLayout
from adplg.errors import AdplgError
from adplg.features.extract import extract_many
from adplg.features.extractors import build_extractor
from adplg.inference.calibration import calibrate
from adplg.inference.inputs import record_clock
from adplg.inference.timeline import build_timeline
from adplg.report.build import build_report

# 40 frames: 40 ms apart, then 200 ms gaps, like tree.avi's frames that never decode
GAPS_MS = [40] * 10 + [200] * 10 + [40] * 5 + [120] * 8 + [40] * 6
PTS_MS = np.concatenate([[0], np.cumsum(GAPS_MS)]).astype(int)  # [40]
RATE = 25  # the container's nominal rate


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("clock")
    weights = write_random_clip(root / "ViT-B-16.pt", seed=0, width=32, layers=1)
    extractor = build_extractor("clip", weights, crops=1, batch_snippets=1)
    video = write_timed_video(root / "vfr.avi", PTS_MS, rate=RATE)  # mpeg4 in AVI: a codec browsers do not play
    assert extract_many(video, extractor, root / "features", progress=False).ok
    return root, video, read_video_record(root / "features", "vfr")


def _timeline(record, scores):
    clock = record_clock(record, len(scores), "record")
    return build_timeline("vfr", np.asarray(scores, np.float64), layout=SnippetLayout(), fps=clock.fps,
                          fps_source="extraction record", snippet_start_s=clock.snippet_start_s,
                          snippet_end_s=clock.snippet_end_s, frame_start_s=clock.frame_start_s)


def test_frame_pts_round_trip():
    coded = encode_frame_pts(PTS_MS / 1000, None)
    assert coded["steps"][0] == [40_000, 10] and len(coded["steps"]) == 5  # five runs of equal steps
    assert np.allclose(decode_frame_pts(coded, "x"), PTS_MS / 1000)
    assert encode_frame_pts(np.arange(1000) / 25, None)["steps"] == [[40_000, 999]]  # constant rate: one run
    with pytest.raises(AdplgError, match="meta/x.json: frame_pts"):
        decode_frame_pts({"time_base": "1/1000", "first": 0, "steps": [[40, 0]]}, "meta/x.json")


def test_record_keeps_every_frame_time_and_the_timeline_uses_them(extracted):
    _, _, record = extracted
    assert record["time_source"] == TIME_FROM_PTS and record["frames_decoded"] == 40
    assert np.allclose(decode_frame_pts(record["frame_pts"], "record"), PTS_MS / 1000, atol=1e-6)
    timeline = _timeline(record, [0.1, 0.9])
    assert timeline.time_source == record["time_source"]  # one wording: the record's
    assert np.allclose(timeline.times_s, PTS_MS[:32] / 1000)  # frame 1 at 0.04 s, frame 17 at its own pts
    assert timeline.times_s[12] == pytest.approx(0.8)  # not interpolated within its snippet (0.0 .. 1.6 s)
    assert timeline.duration_s == pytest.approx(PTS_MS[32] / 1000)
    assert timeline.measured_fps == pytest.approx(32 / (PTS_MS[32] / 1000))  # ~9.3 fps, not the nominal rate
    _, segments = timeline.alerts(AlertRules(on_threshold=0.5))
    assert segments[0].start_s == pytest.approx(PTS_MS[16] / 1000) and segments[0].end_s == timeline.duration_s


def test_calibration_counts_real_time(extracted):
    _, _, record = extracted
    timeline = _timeline(record, [0.1, 0.2])
    rules = calibrate([timeline], 0.05)
    assert rules.calibration["hours"] == pytest.approx(timeline.duration_s / 3600)  # 3.44 s, not 32 / 25 = 1.28 s
    # the minimum duration is real time: snippet 1 (1.6 s .. 3.44 s) lasts 1.84 s, though only 16 frames (0.64 s
    # at the nominal rate)
    busy = _timeline(record, [0.1, 0.9])
    assert busy.alerts(AlertRules(on_threshold=0.5, min_duration_s=1.5))[1]
    assert not busy.alerts(AlertRules(on_threshold=0.5, min_duration_s=2.0))[1]
    assert busy.dropped_spans(AlertRules(on_threshold=0.5, min_duration_s=2.0)) == [
        (pytest.approx(1.6), pytest.approx(3.44))]
    rules = calibrate([busy], 0.6, min_duration_s=1.0)  # the alerted share is of time: 1.84 s of 3.44 s (53%)
    assert rules.on_threshold == pytest.approx(0.9) and rules.calibration["achieved_far"] == pytest.approx(1.84 / 3.44)
    assert calibrate([busy], 0.4).calibration["achieved_far"] == 0.0  # 53% of the time is over 40%


def test_fps_warning_once_per_call_worded_for_the_api(tiny_checkpoint, caplog, capsys):
    """Worded for the API even after a command ran in this process (its flag hints are removed when it ends)."""
    from adplg.cli.main import main

    checkpoint, data = tiny_checkpoint(64)
    normal = sorted((data.root / "test" / "Testing_Normal_Videos_Anomaly").glob("*.npy"))[:12]
    scorer = adplg.load(checkpoint)
    assert main(["calibrate", str(data.root / "none.npy"), "--checkpoint", str(checkpoint), "--fps", "30",
                 "--target-far", "0.05"]) == 2
    assert "none.npy" in capsys.readouterr().err  # a command with an --fps flag ran (and failed) in this process
    with caplog.at_level(logging.WARNING, logger="adplg"):
        adplg.calibrate(scorer, normal, target_far=0.05, save_to=False)
    warnings = [r.getMessage() for r in caplog.records if "frame rate unknown" in r.getMessage()]
    assert len(warnings) == 1 and "12 video(s)" in warnings[0] and "pass fps=" in warnings[0], warnings
    assert "--fps" not in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adplg"):
        rules = adplg.calibrate(scorer, normal, target_far=0.05, save_to=False, fps=30)
    assert not [r for r in caplog.records if "frame rate unknown" in r.getMessage()]
    assert rules.calibration["hours"] == pytest.approx(sum(np.load(f).shape[0] for f in normal) * 16 / 30 / 3600)


def test_score_outputs_and_report_share_the_clock(extracted, tmp_path):
    root, video, record = extracted
    timeline = _timeline(record, [0.9, 0.1])
    rules = AlertRules(on_threshold=0.5, min_duration_s=2.0)  # the 1.6 s above the threshold are dropped
    summary = timeline.save(tmp_path / "scores", rules, plot=False)
    assert summary["time_source"] == record["time_source"] and summary["measured_fps"] == pytest.approx(32 / 3.44, 1e-3)
    saved = json.loads((tmp_path / "scores" / "vfr.json").read_text())
    assert saved["dropped_spans"] == [[0.0, 1.6]] and saved["segments"] == []
    (tmp_path / "scores" / "summary.json").write_text(json.dumps({"videos": [summary], "alert_rules": rules.to_dict()}))
    report = build_report(tmp_path / "scores", tmp_path / "report", videos_dir=root)
    page = (tmp_path / "report" / "videos" / "vfr.html").read_text()
    assert f"9.3 fps measured ({record['fps']:g} fps nominal)" in page and "times from pts" in page
    assert "raised no alert, being shorter than the minimum duration 2 s" in page and '"dropped":[[0.0,1.6]]' in page
    index = (tmp_path / "report" / "index.html").read_text()
    codec_note = "The source video is mpeg4, which browsers may not play"
    assert codec_note in page and codec_note in index  # no alert, still the same note on the index
    assert report.alerts == 0
