"""Snippet times from the container's presentation timestamps (``meta/<video>.json``: ``snippet_start_s``,
``snippet_end_s``, ``time_source``, ``duration_s``, ``frame_count_mismatch``) and extraction progress counted in
snippets. Variable-frame-rate clips are written here with PyAV (``media.write_timed_video``, time base 1/1000); the
backbone is a tiny random CLIP tower."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from backbone_weights import write_random_clip
from media import write_timed_video

from adplg.conventions import SNIPPET_FRAMES
from adplg.features.extract import extract_many
from adplg.features.extractors import build_extractor
from adplg.features.video import SnippetReader, frame_count_mismatch, probe_video, snippet_bounds

# 40 frames: 40 ms apart, then 200 ms gaps across the first snippet boundary, 120 ms gaps across the second
GAPS_MS = [40] * 10 + [200] * 10 + [40] * 5 + [120] * 8 + [40] * 6
PTS_MS = np.concatenate([[0], np.cumsum(GAPS_MS)]).astype(int)  # [40]
RATE = 25  # nominal rate: the muxers give the last frame 1 / 25 s


def _expected(pts_ms: np.ndarray, start_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(start [T], end [T]) seconds the snippets must get from ``pts_ms`` (frames after the last complete snippet
    exist: a snippet ends at the next frame; else at the last frame + 1 / RATE)."""
    rel = (pts_ms - start_ms) / 1000.0
    ends = np.append(rel[1:], rel[-1] + 1.0 / RATE)
    count = len(rel) // SNIPPET_FRAMES
    first = np.arange(count) * SNIPPET_FRAMES
    return rel[first], ends[first + SNIPPET_FRAMES - 1]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    weights = write_random_clip(tmp_path_factory.mktemp("w") / "ViT-B-16.pt", seed=0, width=32, layers=1)
    return build_extractor("clip", weights, crops=1, batch_snippets=1)


def _meta(out, name: str) -> dict:
    return json.loads((out / "meta" / f"{name}.json").read_text())


# ------------------------------------------------------------------------------------------------ pure functions
def test_snippet_bounds_use_the_next_decoded_frame():
    times = np.array([0.0, 0.1, 0.5, 0.6, 2.0, 2.1, 2.2])  # [F=7], snippets of 2 -> T = 3, frame 6 dropped
    start, end = snippet_bounds(times, 2.3, snippet_frames=2)
    assert start.tolist() == [0.0, 0.5, 2.0]
    assert end.tolist() == [0.5, 2.0, 2.2]  # the last snippet ends at the dropped partial snippet's first frame
    start, end = snippet_bounds(times[:6], 2.25, snippet_frames=2)
    assert end.tolist() == [0.5, 2.0, 2.25]  # nothing decoded after it: the last frame's end
    assert snippet_bounds(times[:1], 0.1, snippet_frames=2)[0].shape == (0,)


def test_frame_count_mismatch():
    assert frame_count_mismatch(444, 68) == {"container": 444, "decoded": 68}
    assert frame_count_mismatch(40, 40) is None
    assert frame_count_mismatch(0, 68) is None  # count unknown: nothing to compare


# -------------------------------------------------------------------------------------------- variable frame rate
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_meta_times(extractor, tmp_path, suffix, caplog):
    video = write_timed_video(tmp_path / f"vfr{suffix}", PTS_MS, rate=RATE)
    with caplog.at_level(logging.WARNING, logger="adplg"):
        report = extract_many(video, extractor, tmp_path / "out", progress=False)
    assert report.ok and report.done == ["vfr"]
    meta = _meta(tmp_path / "out", "vfr")
    start, end = _expected(PTS_MS)
    assert meta["snippets"] == 2 and meta["frames_decoded"] == 40 and meta["time_source"] == "pts"
    assert np.allclose(meta["snippet_start_s"], start, atol=1e-3), (meta["snippet_start_s"], start)
    assert np.allclose(meta["snippet_end_s"], end, atol=1e-3), (meta["snippet_end_s"], end)
    assert meta["snippet_end_s"][0] == pytest.approx(PTS_MS[16] / 1000, abs=1e-3)  # 2.0 s, not 16 / fps = 0.64 s
    assert meta["duration_s"] == pytest.approx(PTS_MS[-1] / 1000 + 1 / RATE, abs=1e-3)
    assert "fps" in meta and "frame_count_mismatch" not in meta
    assert not [r for r in caplog.records if "frames but" in r.getMessage()]


def test_times_are_relative_to_the_stream_start(tmp_path):
    pts = PTS_MS[:32] + 500  # the stream starts at 0.5 s
    reader = SnippetReader(write_timed_video(tmp_path / "late.mkv", pts, rate=RATE))
    assert len(list(reader)) == 2
    times = reader.snippet_times()
    start, end = _expected(pts, start_ms=500)
    assert times.source == "pts" and np.allclose(times.start_s, start, atol=1e-3)
    assert times.start_s[0] == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(times.end_s, end, atol=1e-3)  # the last snippet ends at its last frame + 1 / 25 s


def test_frame_count_mismatch_is_recorded_and_warned(extractor, tmp_path, caplog):
    # an AVI has one frame slot per time-base tick: the container counts 3840 frames, 40 decode (like tree.avi)
    video = write_timed_video(tmp_path / "dropped.avi", PTS_MS, rate=RATE)
    assert probe_video(video).frames == PTS_MS[-1] + 40
    with caplog.at_level(logging.WARNING, logger="adplg"):
        assert extract_many(video, extractor, tmp_path / "out", progress=False).ok
    meta = _meta(tmp_path / "out", "dropped")
    assert meta["frame_count_mismatch"] == {"container": PTS_MS[-1] + 40, "decoded": 40}
    assert any("3840 frames but 40 decoded" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    start, end = _expected(PTS_MS)
    assert meta["time_source"] == "pts" and np.allclose(meta["snippet_start_s"], start, atol=1e-3)
    assert np.allclose(meta["snippet_end_s"], end, atol=1e-3)
    assert meta["duration_s"] == pytest.approx(3.84, abs=1e-3)  # the stream's duration


def test_no_timestamps_falls_back_to_frame_index(tmp_path):
    # a raw H.264 stream carries no presentation times: frame i is at i / fps
    reader = SnippetReader(write_timed_video(tmp_path / "raw.h264", PTS_MS, rate=RATE, codec="libx264"))
    assert len(list(reader)) == 2 and reader.frames_decoded == 40
    times = reader.snippet_times()
    assert times.source == "frame index"
    assert np.allclose(times.start_s, [0.0, 0.64]) and np.allclose(times.end_s, [0.64, 1.28])
    assert times.duration_s == pytest.approx(40 / RATE) and times.duration_source == "decoded frames"


# --------------------------------------------------------------------------------------------------- progress
def test_progress_counts_snippets(extractor, tmp_path, capsys):
    video = write_timed_video(tmp_path / "dropped.avi", PTS_MS, rate=RATE)  # estimate 3840 // 16 = 240, real 2
    calls: list[int] = []
    features, _, _ = extractor.video_features(video, progress=calls.append)
    assert calls == [1, 1] and features.shape[0] == 2  # batch_snippets=1: one call per encoded snippet

    capsys.readouterr()
    assert extract_many(video, extractor, tmp_path / "out", progress=True).ok
    err = capsys.readouterr().err
    assert "snippet" in err and "dropped.avi" in err
    assert "2/2" in err.replace("\r", "\n").strip().splitlines()[-1]  # the total was corrected to the real count

    assert extract_many(video, extractor, tmp_path / "quiet", progress=False).ok
    assert capsys.readouterr().err == ""
