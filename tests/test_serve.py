"""Issue 28: ``adplg serve``, the camera service: its config's errors, several cameras sharing one backbone with
the events ``adplg watch`` finds per camera, reload without touching the other cameras, stop ending open alerts, the
real SIGTERM / SIGHUP path, and a real RTSP server restarted under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from media import write_timed_video, write_video
from rtsp_helpers import RtspServer, require_gst_rtsp_server
from serve_helpers import FakeSink, midpoint_threshold, settings, start, wait_for
from shared_helpers import free_port

import adplg.features.extractors
from adplg.alert_rules import AlertRules, alert_segments
from adplg.cli.main import main
from adplg.conventions import SNIPPET_FRAMES
from adplg.errors import AdplgError
from adplg.live.watch import watch
from adplg.service.config import load_service_config, parse_service_config
from adplg.service.runner import Service

pytest_plugins = ["watch_models", "mqtt_broker"]  # the clip_run, mqtt_broker and mqtt_messages fixtures

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------- config
def test_config_errors_name_the_camera_and_the_closest_key(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"checkpoint": "m.safetensors", "cameras": {
        "porch": "rtsp://cam/1", "garage": {"source": "rtsp://cam/2", "encode_evry": 2,
                                            "rules": {"on_treshold": 0.5}}}}))
    with pytest.raises(AdplgError) as info:
        load_service_config(path)
    text = str(info.value)
    assert str(path) in text
    assert "camera 'garage': unknown key cameras.garage.encode_evry (did you mean cameras.garage.encode_every?)" in text
    assert "cameras.garage.rules.on_treshold (did you mean cameras.garage.rules.on_threshold?)" in text

    with pytest.raises(AdplgError, match=r"unknown key htp \(did you mean http\?\)"):
        parse_service_config({"checkpoint": "m", "htp": {}, "cameras": {"a": "x.mp4"}})
    with pytest.raises(AdplgError, match="expected names of letters"):
        parse_service_config({"checkpoint": "m", "cameras": {"front door": "x.mp4"}})
    # beyond loopback: a token is required, by the config and (unset variable) at start
    with pytest.raises(AdplgError, match=r"http.host 0.0.0.0 is reachable beyond this machine: expected a bearer"):
        parse_service_config({"checkpoint": "m", "http": {"host": "0.0.0.0"}, "cameras": {"a": "x.mp4"}})
    config = parse_service_config({"checkpoint": "m", "http": {"host": "0.0.0.0", "token_env": "ADPLG_TEST_NO_TOKEN"},
                                   "outputs": str(tmp_path / "out"), "cameras": {"a": "x.mp4"}})
    with pytest.raises(AdplgError, match="ADPLG_TEST_NO_TOKEN is not set"):
        Service(config)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_reports_config_errors_and_checks_a_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoint: m.safetensors\ncameras:\n  porch: {source: x.mp4, enabeld: false}\n")
    assert main(["serve", str(bad)]) == 2
    assert "did you mean cameras.porch.enabled?" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("checkpoint: m.safetensors\ncameras:\n  porch: rtsp://viewer:hunter2@cam.local/s1\n")
    assert main(["serve", str(good), "--check"]) == 2  # --check also looks for the checkpoint
    assert f"checkpoint {tmp_path / 'm.safetensors'} does not exist" in capsys.readouterr().err
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert main(["serve", str(good), "--check"]) == 0
    err = capsys.readouterr().err
    assert "porch: rtsp://viewer:***@cam.local/s1" in err and "hunter2" not in err and "valid (1 camera(s))" in err



def test_the_deploy_guide_config_is_valid():
    text = (REPO / "docs" / "deploy.md").read_text()
    block = text.split("```yaml\n# /etc/adplg/cameras.yaml\n", 1)[1].split("```", 1)[0]
    config = parse_service_config(yaml.safe_load(block))
    assert sorted(config.cameras) == ["garage", "porch", "shed"] and config.mqtt is not None
    assert config.plans()["garage"].encode_every == 2 and not config.plans()["shed"].enabled

# ----------------------------------------------------------------------------------------------- many cameras
def test_two_cameras_share_one_backbone_and_find_what_watch_finds(clip_run, tmp_path, monkeypatch):
    run, weights = clip_run
    videos = {name: write_video(tmp_path / f"{name}.mp4", 10 * SNIPPET_FRAMES, fps=25, seed=seed)
              for name, seed in (("a", 3), ("b", 5))}
    expected, thresholds = {}, {}
    for name, video in videos.items():  # what `adplg watch` finds: its scores under the camera's rules
        scores = watch(video, run.checkpoint, weights=weights, device="cpu", window=64, delay=2).snippet_scores
        thresholds[name] = midpoint_threshold(scores)
        expected[name] = alert_segments(np.repeat(scores, SNIPPET_FRAMES), 25.0,
                                        AlertRules(on_threshold=thresholds[name]))
        assert expected[name]

    built = []
    real_build = adplg.features.extractors.build_extractor
    monkeypatch.setattr(adplg.features.extractors, "build_extractor",
                        lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    sink = FakeSink()
    # played at their frame rate, as cameras deliver (both readers then run side by side, whatever the machine's
    # load; as fast as decoding goes, one short file may be read whole before the other opens); 160 frames fit the
    # reader's 256-frame queue, so none is dropped
    cameras = {name: {"source": str(video), "rules": {"on_threshold": thresholds[name]}, "realtime": True}
               for name, video in videos.items()}
    service = Service(parse_service_config(settings(run, weights, tmp_path / "out", cameras)), sinks=[sink])
    thread = start(service)
    wait_for(lambda: service.cameras and all(c.state == "ended" for c in service.cameras.values()),
             what="both files scored")
    service.stop()
    thread.join(30)

    assert len(built) == 1  # one backbone for both cameras
    assert all(c.loop.extractor is service.extractor is built[0] for c in service.cameras.values())
    assert service.multi_camera_forwards >= 1  # snippets of both cameras in one forward pass
    lines = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert lines == sink.events
    for name in videos:
        ends = [e for e in lines if e["camera"] == name and e["kind"] == "end"]
        spans = [v for e in ends for v in (e["start_s"], e["end_s"])]
        assert spans == pytest.approx([v for s in expected[name] for v in (s.start_s, s.end_s)], abs=1e-6)
        assert [e["peak_score"] for e in ends] == pytest.approx([s.peak_score for s in expected[name]], abs=1e-5)
        news = [e for e in lines if e["camera"] == name and e["kind"] == "new"]
        assert [e["event_id"] for e in news] == [e["event_id"] for e in ends]
        assert all(e["event_id"].startswith(f"{name}-") and e["event_id"].endswith(f"-{k + 1}")
                   for k, e in enumerate(news))
        assert all(Path(e["snapshot"]).is_file() and Path(e["snapshot"]).parent.name == name for e in news)
        states = [c for c in sink.calls if c[0] == "state" and c[1] == name]
        assert len(states) == 10  # every snippet's score
    assert ("added", "a") in sink.calls and sink.calls[-1] == ("close",)


def test_reload_adds_and_removes_cameras_without_touching_the_others(clip_run, tmp_path):
    run, weights = clip_run
    a = write_video(tmp_path / "a.mp4", 40 * SNIPPET_FRAMES, fps=25, seed=1)
    b = write_video(tmp_path / "b.mp4", 40 * SNIPPET_FRAMES, fps=25, seed=2)
    base = settings(run, weights, tmp_path / "out", {"a": str(a)}, realtime=True)
    sink = FakeSink()
    service = Service(parse_service_config(base), sinks=[sink])
    thread = start(service)
    try:
        wait_for(lambda: "a" in service.cameras and service.cameras["a"].report.snippets > 0, what="a scoring")
        camera_a, reader_a = service.cameras["a"], service.cameras["a"].reader
        snippets_a = camera_a.report.snippets
        assert service.reload(parse_service_config({**base, "cameras": {"a": str(a), "b": str(b)}}))
        wait_for(lambda: service.cameras["b"].state == "up", what="camera b up")
        assert service.cameras["a"] is camera_a and camera_a.reader is reader_a and reader_a._thread.is_alive()
        wait_for(lambda: camera_a.report.snippets > snippets_a, what="a scoring on")
        camera_b = service.cameras["b"]

        assert service.reload(parse_service_config({**base, "cameras": {"b": str(b)}}))
        assert "a" not in service.cameras and camera_a.state == "stopped" and camera_a.reader is None
        assert service.cameras["b"] is camera_b
        snippets_b = camera_b.report.snippets
        wait_for(lambda: camera_b.report.snippets > snippets_b, what="camera b scoring on")

        # a changed camera restarts
        assert service.reload(parse_service_config({**base, "cameras": {"b": {"source": str(b), "encode_every": 2}}}))
        assert service.cameras["b"] is not camera_b and service.cameras["b"].plan.encode_every == 2
        assert not service.reload(None)  # no config file to read again
    finally:
        service.stop()
        thread.join(30)
    assert [c for c in sink.calls if c[0] in ("added", "removed")] == [
        ("added", "a"), ("added", "b"), ("removed", "a"), ("removed", "b"), ("added", "b")]
    assert snippets_a > 0


def test_stop_ends_open_alerts(clip_run, tmp_path):
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 60 * SNIPPET_FRAMES, fps=25, seed=1)
    config = settings(run, weights, tmp_path / "out", {"cam": str(video)}, realtime=True,
                      rules={"on_threshold": 0.0})  # every snippet is anomalous: the alert stays open
    sink = FakeSink()
    service = Service(parse_service_config(config), sinks=[sink])
    thread = start(service)
    wait_for(lambda: any(e["kind"] == "new" for e in sink.events), what="an alert")
    service.stop()
    thread.join(30)
    assert not thread.is_alive()
    (new,) = [e for e in sink.events if e["kind"] == "new"]
    (end,) = [e for e in sink.events if e["kind"] == "end"]
    assert end["event_id"] == new["event_id"] and end["end_s"] > new["start_s"] and end["end_wall"]
    assert json.loads((tmp_path / "out" / "events.jsonl").read_text().splitlines()[-1])["kind"] == "end"


# ----------------------------------------------------------------------------------------- the real signal path
def test_sighup_reloads_and_sigterm_ends_alerts_and_exits_0(clip_run, tmp_path):
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 60 * SNIPPET_FRAMES, fps=25, seed=1)
    path = tmp_path / "serve.yaml"
    config = settings(run, weights, tmp_path / "out", {"cam": str(video)}, realtime=True,
                      rules={"on_threshold": 0.0})
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "adplg.cli.main", "serve", str(path)], env=env,
                            stderr=subprocess.PIPE, text=True)
    events = tmp_path / "out" / "events.jsonl"
    try:
        wait_for(lambda: events.is_file() and '"new"' in events.read_text(), 120, "an alert")
        path.write_text(yaml.safe_dump({**config, "cameras": {"cam": str(video), "cam2": str(video)}}))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: '"cam2"' in events.read_text(), 60, "the reloaded camera's alert")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert code == 0, err
    assert "reload: 1 camera(s) added, 0 removed, 0 restarted, 1 unchanged" in err
    records = [json.loads(line) for line in events.read_text().splitlines()]
    for camera in ("cam", "cam2"):
        kinds = [r["kind"] for r in records if r["camera"] == camera and r["kind"] != "update"]
        assert kinds == ["new", "end"], (camera, kinds)


# ---------------------------------------------------------------------------------------- a real RTSP server
def test_the_service_survives_a_restarted_rtsp_server(clip_run, tmp_path):
    require_gst_rtsp_server()
    run, weights = clip_run
    video = write_timed_video(tmp_path / "cam.mp4", (np.arange(30 * 25) * 40).tolist(), rate=25, codec="libx264")
    server = RtspServer(video, free_port())
    server.start()
    sink = FakeSink()
    config = settings(run, weights, tmp_path / "out", {"door": server.url},
                      reader={"stall_timeout_s": 3.0, "backoff_s": 0.2, "max_retries": 20})
    service = Service(parse_service_config(config), sinks=[sink])
    thread = start(service)
    try:
        wait_for(lambda: "door" in service.cameras and service.cameras["door"].report.snippets >= 3, 60,
                 "snippets scored")
        server.kill()
        wait_for(lambda: any(e["kind"] == "stream_down" for e in sink.events), 30, "stream_down")
        assert service.health()[0] == 503
        time.sleep(1.0)
        server.start()
        wait_for(lambda: any(e["kind"] == "stream_up" for e in sink.events), 60, "stream_up")
        after = service.cameras["door"].report.snippets
        wait_for(lambda: service.cameras["door"].report.snippets >= after + 2, 60, "scoring after the restart")
        assert service.health()[0] == 200
    finally:
        service.stop()
        thread.join(30)
        server.kill()
    (down,) = [e for e in sink.events if e["kind"] == "stream_down"]
    (up,) = [e for e in sink.events if e["kind"] == "stream_up"]
    assert down["camera"] == up["camera"] == "door" and down["event_id"] is None
    assert up["outage_s"] >= 1.0 and up["start_s"] == down["start_s"] and up["end_s"] > up["start_s"]
    counters = service.cameras["door"].counters()
    assert counters["reconnections"] == 1 and counters["outages"] == 1



def test_a_camera_down_for_good_is_retried_and_its_clock_goes_on(clip_run, tmp_path):
    """The reader gives up at once (max_retries 0): the camera is down, a new reader is tried every second, and its
    frames continue the camera's clock from the wall clock (the outage stays a gap)."""
    require_gst_rtsp_server()
    run, weights = clip_run
    video = write_timed_video(tmp_path / "cam.mp4", (np.arange(30 * 25) * 40).tolist(), rate=25, codec="libx264")
    server = RtspServer(video, free_port())  # not started yet: the camera starts down
    sink = FakeSink()
    config = settings(run, weights, tmp_path / "out", {"door": server.url},
                      reader={"stall_timeout_s": 3.0, "backoff_s": 0.1, "max_retries": 0, "retry_down_s": 1.0})
    service = Service(parse_service_config(config), sinks=[sink])
    thread = start(service)
    try:
        wait_for(lambda: "door" in service.cameras and service.cameras["door"].state == "down", 30, "down")
        assert service.health()[0] == 503
        server.start()
        wait_for(lambda: service.cameras["door"].report.snippets >= 2, 60, "scoring once the server is up")
        server.kill()
        wait_for(lambda: sum(e["kind"] == "stream_down" for e in sink.events) == 2, 30, "the second stream_down")
        wait_for(lambda: service.cameras["door"].state == "down", 30, "down again")
        time.sleep(1.5)
        server.start()
        wait_for(lambda: sum(e["kind"] == "stream_up" for e in sink.events) == 2, 60, "the second stream_up")
        after = service.cameras["door"].report.snippets
        wait_for(lambda: service.cameras["door"].report.snippets >= after + 2, 60, "scoring after the retry")
    finally:
        service.stop()
        thread.join(30)
        server.kill()
    outages = [e for e in sink.events if e["kind"] in ("stream_down", "stream_up")]
    assert [e["kind"] for e in outages] == ["stream_down", "stream_up", "stream_down", "stream_up"]
    _, up1, down2, up2 = outages
    assert down2["start_s"] >= up1["end_s"] and up2["start_s"] == down2["start_s"]
    assert up2["outage_s"] >= 1.5 and up2["end_s"] - up2["start_s"] == pytest.approx(up2["outage_s"], abs=1.0)
    camera = service.cameras["door"]
    assert camera.retries >= 2 and camera.counters()["reconnections"] == 2

# ------------------------------------------------------------------------------------------------------ clips
def test_alert_clips_are_closed_at_stop_and_named_in_the_events(clip_run, tmp_path):
    pytest.importorskip("adplg.service.clips")  # service/clips.py (the mqtt branch of issue 28)
    import av

    run, weights = clip_run
    video = write_timed_video(tmp_path / "cam.mp4", (np.arange(30 * 25) * 40).tolist(), rate=25, gop=25)
    config = settings(run, weights, tmp_path / "out", {"cam": str(video)}, realtime=True,
                      rules={"on_threshold": 0.0}, clips={"enabled": True, "pre_s": 1.0, "post_s": 1.0})
    sink = FakeSink()
    service = Service(parse_service_config(config), sinks=[sink])
    thread = start(service)
    wait_for(lambda: any(e["kind"] == "new" for e in sink.events), 60, "an alert")
    time.sleep(2.0)
    service.stop()
    thread.join(30)
    (new,) = [e for e in sink.events if e["kind"] == "new"]
    (end,) = [e for e in sink.events if e["kind"] == "end"]
    clip = Path(new["clip"])
    assert end["clip"] == new["clip"] and clip.parent == tmp_path / "out" / "clips" / "cam"
    assert clip.is_file()  # closed by the stop
    with av.open(str(clip)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 25  # at least the second before the stop
    sidecar = json.loads(clip.with_suffix(".json").read_text())
    assert sidecar["event_id"] == new["event_id"] and sidecar["camera"] == "cam"
    assert sidecar["info"]["rules"]["on_threshold"] == 0.0 and sidecar["info"]["checkpoint"] == [str(run.checkpoint)]
    assert sidecar["info"]["peak_score"] == pytest.approx(end["peak_score"])


# ------------------------------------------------------------------------------------------------------ MQTT
def test_mqtt_events_equal_the_alerts_of_adplg_score(clip_run, tmp_path, mqtt_broker, mqtt_messages):
    run, weights = clip_run
    snippets = 8
    video = write_video(tmp_path / "door.mp4", snippets * SNIPPET_FRAMES, fps=25, seed=7)
    assert main(["score", str(video), "--checkpoint", str(run.checkpoint), "--weights", str(weights), "--out",
                 str(tmp_path / "probe"), "--no-plot", "--quiet"]) == 0
    probe = json.loads((tmp_path / "probe" / "door.json").read_text())
    threshold = midpoint_threshold(np.asarray(probe["score"])[::SNIPPET_FRAMES])
    assert main(["score", str(video), "--checkpoint", str(run.checkpoint), "--weights", str(weights), "--out",
                 str(tmp_path / "offline"), "--no-plot", "--quiet", "--threshold", str(threshold)]) == 0
    offline = json.loads((tmp_path / "offline" / "door.json").read_text())["segments"]
    assert offline
    # delay = T - 1: every online score is made with the whole video in the buffer, as offline
    config = settings(run, weights, tmp_path / "out", {"door": str(video)}, delay=snippets - 1, name="home",
                      rules={"on_threshold": threshold},
                      mqtt={"host": mqtt_broker.host, "port": mqtt_broker.port, "state_every_s": 0})
    service = Service(parse_service_config(config))
    thread = start(service)
    wait_for(lambda: "door" in service.cameras and service.cameras["door"].state == "ended", 60, "the file scored")
    service.stop()
    thread.join(30)
    mqtt_messages.wait_for(lambda m: m.topic == "adplg/availability" and m.payload == "offline")
    events = [json.loads(m.payload) for m in mqtt_messages.on("adplg/events")]
    ends = [e for e in events if e["kind"] == "end"]
    spans = [v for e in ends for v in (e["start_s"], e["end_s"])]
    assert spans == pytest.approx([v for s in offline for v in (s["start_s"], s["end_s"])], abs=1e-6)
    assert [e["peak_score"] for e in ends] == pytest.approx([s["peak_score"] for s in offline], abs=1e-5)
    assert [e["event_id"] for e in events if e["kind"] == "new"] == [e["event_id"] for e in ends]
    # the anomaly state went ON for each alert and ended OFF; a score per snippet; discovery for the camera
    states = [m.payload for m in mqtt_messages.on("adplg/door/anomaly")]
    assert states.count("ON") == len(offline) and states[-1] == "OFF"
    assert len(mqtt_messages.on("adplg/door/score")) >= snippets
    binary = json.loads(mqtt_messages.on("homeassistant/binary_sensor/home/door_anomaly/config")[0].payload)
    assert binary["state_topic"] == "adplg/door/anomaly" and binary["device_class"] == "problem"
