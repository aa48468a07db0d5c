"""Alert clips (service/clips.py, issue 28 item 5) and the packet tap of live/sources.py AVSource that feeds them:
packet times in the frames' clock (files, reconnects, a real RTSP server restarted), clips remuxed from H.264 packets
cut at key frames (duration, first frame checked with PyAV), the sidecar, bounded memory, retention and crash
safety."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import write_timed_video

from adplg.errors import AdplgError
from adplg.live.sources import END, AVSource, Frame, FrameReader, StreamDown, StreamUp
from adplg.service.clips import ClipRecorder, prune_clips

FPS = 25
GOP = 10  # frames between key frames (x264's scene cut may add some)


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    """12 s of H.264 (B-frames, a key frame at least every 10 frames) at 25 fps; each frame differs (a moving
    square)."""
    path = tmp_path_factory.mktemp("clips") / "cam.mp4"
    return write_timed_video(path, (np.arange(12 * FPS) * 1000 // FPS).tolist(), rate=FPS, codec="libx264", gop=GOP)


def _packets(video: Path) -> list[tuple[av.Packet, float]]:
    """Every video packet of ``video`` (decode order) with its presentation time in seconds."""
    container = av.open(str(video))
    stream = container.streams.video[0]
    out = [(p, float(p.pts * stream.time_base)) for p in container.demux(stream) if p.size]
    return out  # the container stays open: the packets' stream is alive, as in a live source


def _frames(video: Path) -> list[tuple[float, np.ndarray, bool]]:
    """``(time_s, RGB image, key frame)`` of every frame of ``video`` in presentation order."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        return [(float((f.pts - start) * stream.time_base), f.to_ndarray(format="rgb24"), f.key_frame)
                for f in container.decode(stream)]


def _read(reader: FrameReader, until, timeout_s: float = 30.0) -> list:
    """Items of ``reader`` until ``until(items)`` or END."""
    items: list = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(items):
        item = reader.get(0.2)
        if item is END:
            break
        if item is not None:
            items.append(item)
    reader.stop()
    return items


# --------------------------------------------------------------------------------------------------- the packet tap
def test_the_packet_tap_times_packets_as_the_frames_of_a_file(h264):
    tapped: list[tuple[float, bool]] = []
    source = AVSource(str(h264), packet_tap=lambda p, t: tapped.append((t, p.is_keyframe)))
    items = _read(FrameReader(source, queue_frames=1000).start(), lambda items: False)
    frame_times = [f.time_s for f in items if isinstance(f, Frame)]
    assert len(frame_times) == 12 * FPS and len(tapped) == len(frame_times)
    assert sorted(t for t, _ in tapped) == pytest.approx(sorted(frame_times), abs=1e-9)
    assert [t for t, key in tapped if key][:2] == pytest.approx([0.0, GOP / FPS])

    untapped = _read(FrameReader(AVSource(str(h264)), queue_frames=1000).start(), lambda items: False)
    assert [f.time_s for f in untapped] == frame_times  # the tap changes nothing the reader emits
    assert all(np.array_equal(a.image, b.image) for a, b in zip(untapped, items, strict=True))


def test_the_packet_tap_follows_the_readers_clock_after_a_reconnect(h264):
    """A live source (the file replayed as a camera that restarts): the second connection's packets are timed like
    its frames, on the wall-clock-anchored offset the reader gives it (not the stream's own timestamps from 0)."""
    tapped: list[float] = []
    source = AVSource(str(h264), packet_tap=lambda p, t: tapped.append(t))
    source.live = True  # reconnected when it ends, like a camera
    reader = FrameReader(source, queue_frames=2000, backoff_s=0.3, max_retries=3).start()
    items = _read(reader, lambda items: sum(isinstance(i, Frame) for i in items) >= 2 * 12 * FPS)
    up = next(i for i in items if isinstance(i, StreamUp))
    assert any(isinstance(i, StreamDown) for i in items)
    second = [i.time_s for i in items[items.index(up) + 1:] if isinstance(i, Frame)]
    assert second[0] == pytest.approx(up.at_s) and up.at_s > 12 - 1 / FPS + 0.3  # the last frame + the backoff
    assert sorted(tapped[12 * FPS:2 * 12 * FPS]) == pytest.approx(sorted(second), abs=1e-9)


def test_a_failing_tap_costs_its_packets_not_the_stream(h264):
    def tap(packet, time_s):
        raise RuntimeError("disk gone")

    source = AVSource(str(h264), packet_tap=tap)
    items = _read(FrameReader(source, queue_frames=1000).start(), lambda items: False)
    assert sum(isinstance(i, Frame) for i in items) == 12 * FPS and source.tap_errors == 12 * FPS


# --------------------------------------------------------------------------------------------------- clips
def _feed(recorder: ClipRecorder, packets, until_s: float, start: int = 0) -> int:
    """Feed packets from index ``start`` while their time <= ``until_s``; returns the next index."""
    k = start
    while k < len(packets) and packets[k][1] <= until_s:
        recorder.packet(*packets[k])
        k += 1
    return k


def _decode(clip: Path) -> tuple[list[float], list[np.ndarray], list[bool]]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
        return ([float(f.pts * stream.time_base) for f in frames], [f.to_ndarray(format="rgb24") for f in frames],
                [f.key_frame for f in frames])


def test_a_clip_runs_from_a_key_frame_before_the_alert_to_post_s_after_its_end(h264, tmp_path):
    packets, source = _packets(h264), _frames(h264)
    recorder = ClipRecorder(tmp_path / "clips", "door", pre_s=2.0, post_s=1.5, latency_s=2.0)
    start_s, end_s = 4.1, 6.0
    k = _feed(recorder, packets, start_s + 1.0)  # the alert is raised a second after its start
    path = recorder.begin("door-20260101T000000-1", start_s, {"peak_score": 0.93, "checkpoint": "ucf.safetensors"})
    assert path == tmp_path / "clips" / "door-20260101T000000-1.mp4" and not path.exists()
    k = _feed(recorder, packets, end_s + 0.8, k)  # ... and ended 0.8 s after its end
    recorder.finish("door-20260101T000000-1", end_s, {"mean_score": 0.71})
    assert not path.exists()  # still open: only the hidden part file
    assert [p.name for p in (tmp_path / "clips").iterdir()] == [".door-20260101T000000-1.mp4.part"]
    _feed(recorder, packets, 99.0, k)
    assert path.is_file() and recorder.clips == 1 and recorder.errors == 0

    key_times = [t for t, _, key in source if key]
    clip_start = max(t for t in key_times if t <= start_s - 2.0)
    times, images, keys = _decode(path)
    assert keys[0] and times[0] == pytest.approx(0.0, abs=1e-3)
    first = next(i for i, (t, _, _) in enumerate(source) if t == pytest.approx(clip_start))
    assert np.array_equal(images[0], source[first][1])  # the source's frame at the clip's start, bit for bit
    assert not np.array_equal(images[0], source[first + 1][1])
    assert np.array_equal(images[-1], next(img for t, img, _ in source if t == pytest.approx(clip_start + times[-1])))
    duration = times[-1] + 1 / FPS
    assert duration == pytest.approx(end_s + 1.5 - clip_start, abs=1.01 / FPS)  # ends exactly at end_s + post_s
    assert 2.0 + (end_s - start_s) + 1.5 <= duration + 1e-6 <= 2.0 + (end_s - start_s) + 1.5 + GOP / FPS

    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["event_id"] == "door-20260101T000000-1" and sidecar["camera"] == "door"
    assert (sidecar["start_s"], sidecar["end_s"]) == (start_s, end_s)
    assert sidecar["clip_start_s"] == pytest.approx(clip_start) and sidecar["notes"] == []
    assert sidecar["info"] == {"peak_score": 0.93, "checkpoint": "ucf.safetensors", "mean_score": 0.71}
    written = path.read_bytes()
    assert recorder.begin("door-20260101T000000-1", 9.0, {}) == path  # the same event again: the clip is kept
    recorder.close()
    assert path.read_bytes() == written


def test_memory_is_bounded_to_pre_s_latency_s_and_a_gop(h264, tmp_path):
    packets = _packets(h264)
    recorder = ClipRecorder(tmp_path, "door", pre_s=1.0, post_s=1.0, latency_s=0.5)
    longest = 0
    for packet, t in packets:
        recorder.packet(packet, t)
        longest = max(longest, len(recorder._ring))
    assert longest <= (1.0 + 0.5) * FPS + GOP + 1
    assert len(recorder._ring) >= 1.5 * FPS
    assert not list(tmp_path.iterdir())  # no alert, no file


def test_an_alert_older_than_the_ring_starts_at_the_oldest_key_frame_and_says_so(h264, tmp_path):
    packets = _packets(h264)
    recorder = ClipRecorder(tmp_path, "door", pre_s=1.0, post_s=0.0, latency_s=0.0)
    k = _feed(recorder, packets, 8.0)
    path = recorder.begin("late", 3.0, {})
    recorder.finish("late", 8.0, {})
    _feed(recorder, packets, 99.0, k)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert 6.0 < sidecar["clip_start_s"] <= 7.0 and "reach back" in sidecar["notes"][0]
    times, _, keys = _decode(path)
    assert keys[0] and times[-1] + 1 / FPS == pytest.approx(8.0 - sidecar["clip_start_s"], abs=1.01 / FPS)


def test_close_ends_open_clips_and_overlapping_alerts_get_their_own_clip(h264, tmp_path):
    packets = _packets(h264)
    recorder = ClipRecorder(tmp_path, "door", pre_s=1.0, post_s=5.0, latency_s=1.0)
    k = _feed(recorder, packets, 3.0)
    first = recorder.begin("a", 2.5, {})
    k = _feed(recorder, packets, 4.0, k)
    recorder.finish("a", 3.5, {})
    second = recorder.begin("b", 3.9, {})
    _feed(recorder, packets, 7.0, k)
    recorder.close()  # SIGTERM: both still open (a until 8.5 s, b never ended)
    assert first.is_file() and second.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    for path, start in ((first, 2.5), (second, 3.9)):
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["clip_start_s"] <= start - 1.0 and sidecar["notes"]
        times, _, keys = _decode(path)
        assert keys[0] and sidecar["clip_start_s"] + times[-1] == pytest.approx(7.0, abs=2 / FPS)


def test_a_failing_clip_leaves_no_file_and_never_raises(h264, tmp_path, monkeypatch, caplog):
    packets = _packets(h264)
    recorder = ClipRecorder(tmp_path, "door", pre_s=1.0, post_s=0.5, latency_s=0.0)
    k = _feed(recorder, packets, 3.0)
    path = recorder.begin("broken", 2.0, {})
    clip = recorder._open["broken"]
    assert clip.part.is_file() and not path.exists()

    def fail():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(clip, "container", type("Broken", (), {"close": staticmethod(fail),
                                                               "mux": clip.container.mux})())
    recorder.finish("broken", 3.0, {})
    _feed(recorder, packets, 99.0, k)
    assert recorder.errors == 1 and recorder.clips == 0 and "No space left" in caplog.text
    assert list(tmp_path.iterdir()) == []  # no .mp4, no sidecar, no part file


def test_bad_clip_settings_name_the_parameter(tmp_path):
    with pytest.raises(AdplgError, match="clips.pre_s"):
        ClipRecorder(tmp_path, "door", pre_s=-1)
    with pytest.raises(AdplgError, match="clips.max_total_bytes"):
        prune_clips(tmp_path, 10, -5)


# --------------------------------------------------------------------------------------------------- retention
def test_prune_clips_by_age_then_by_total_size(tmp_path):
    now = time.time()
    for k, age_h in enumerate((50, 30, 10, 2, 1)):
        clip = tmp_path / ("door" if k % 2 else "yard") / f"c{k}.mp4"
        clip.parent.mkdir(exist_ok=True)
        clip.write_bytes(b"x" * 1000)
        clip.with_suffix(".json").write_text("{}")
        os.utime(clip, (now - age_h * 3600, now - age_h * 3600))
    stale = tmp_path / "door" / ".c9.mp4.part"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 48 * 3600, now - 48 * 3600))
    fresh = tmp_path / "door" / ".c8.mp4.part"  # a clip being written
    fresh.write_bytes(b"x")

    removed = prune_clips(tmp_path, max_age_s=24 * 3600, max_total_bytes=None)
    assert [p.name for p in removed] == ["c0.mp4", "c1.mp4"]
    assert not (tmp_path / "yard" / "c0.json").exists() and not stale.exists() and fresh.exists()
    removed = prune_clips(tmp_path, max_age_s=None, max_total_bytes=2100)  # 3 clips of 1002 bytes: keep 2
    assert [p.name for p in removed] == ["c2.mp4"]
    assert sorted(p.name for p in tmp_path.rglob("*.mp4")) == ["c3.mp4", "c4.mp4"]
    assert prune_clips(tmp_path / "missing", 1, 1) == []


# --------------------------------------------------------------------------------------------------- a real server
def test_a_clip_and_the_tap_across_a_restart_of_a_real_rtsp_server(tmp_path, caplog):
    """GStreamer's RTSP server (tests/rtsp_server.py) killed and restarted while a clip is open: the packets of the
    new connection are timed like its frames (the reader's wall-clock anchor, not the restarted stream's 0), and the
    clip holds both connections' frames with the outage as a gap."""
    from rtsp_helpers import RtspServer, require_gst_rtsp_server
    from shared_helpers import free_port

    require_gst_rtsp_server()
    video = write_timed_video(tmp_path / "cam.mp4", (np.arange(20 * FPS) * 1000 // FPS).tolist(), rate=FPS,
                              codec="libx264", gop=GOP)
    server = RtspServer(video, free_port())
    recorder = ClipRecorder(tmp_path / "clips", "cam", pre_s=0.5, post_s=0.5, latency_s=1.5)
    tapped: list[float] = []

    def tap(packet, time_s):
        tapped.append(time_s)
        recorder.packet(packet, time_s)

    connections, frames, path = 0, [], None
    server.start()
    reader = FrameReader(AVSource(f"rtsp://127.0.0.1:{server.port}/cam", stall_timeout=3.0, packet_tap=tap),
                         queue_frames=2000, stall_timeout=3.0, backoff_s=0.2, max_retries=30).start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            item = reader.get(0.2)
            if isinstance(item, StreamUp):
                connections, up = 1, item
            elif isinstance(item, Frame):
                frames.append((connections, item.time_s))
                if path is None and item.time_s >= 2.0:
                    path = recorder.begin("cam-1", 1.5, {"peak_score": 0.8})
                    server.kill()
                    time.sleep(1.0)
                    server.start()
                if connections and item.time_s >= up.at_s + 2.0:
                    recorder.finish("cam-1", up.at_s + 1.0, {})
                    break
            elif item is END:
                break
    finally:
        reader.stop()
        server.kill()
    recorder.close()
    assert connections == 1 and up.down_s >= 1.0, "no reconnection"
    last_before = max(t for c, t in frames if c == 0)
    second_frames = sorted(t for c, t in frames if c == 1)
    second_packets = sorted(t for t in tapped if last_before + 0.5 < t <= second_frames[-1])
    assert second_packets[0] == pytest.approx(second_frames[0], abs=1e-6) and second_frames[0] > 4.0
    assert set(np.round(second_frames, 6)) <= set(np.round(second_packets, 6))

    assert path is not None and path.is_file() and recorder.errors == 0
    sidecar = json.loads(path.with_suffix(".json").read_text())
    times, _, keys = _decode(path)
    assert keys[0] and sidecar["clip_start_s"] <= 1.0
    gap = max(b - a for a, b in zip(times, times[1:]))
    assert gap == pytest.approx(up.at_s - last_before, abs=0.1)  # the outage, kept
    assert sidecar["clip_start_s"] + times[-1] == pytest.approx(up.at_s + 1.5, abs=2.5 / FPS)
