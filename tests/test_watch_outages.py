"""Issue 25.5: an outage of a real RTSP server (GStreamer's gst-rtsp-server, ``tests/rtsp_server.py``, on
127.0.0.1) killed and restarted mid-stream is visible: stream-down / stream-up events with its length, a "reconnected
after" line, reconnections counted apart from attempts, the open alert closed at the outage, and a timeline that
keeps the outage as a gap (the restarted stream's timestamps start again at 0; ours go on from the wall clock).

Needs Debian's ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good`` for the system ``python3``;
skipped without them, except under CI (the environment variable ``CI`` set), where it fails instead
(``tests/rtsp_helpers.py``)."""

from __future__ import annotations

import csv
import logging
import threading
import time

import numpy as np
import pytest
from media import write_timed_video
from rtsp_helpers import RtspServer, require_gst_rtsp_server
from shared_helpers import free_port

from adplg.alert_rules import AlertRules
from adplg.live.watch import watch

pytest_plugins = ["watch_models"]  # the clip_run fixture

DOWN_S = 1.5  # how long the server stays down


def test_a_restarted_rtsp_server_is_an_outage_on_the_timeline(clip_run, tmp_path, caplog):
    require_gst_rtsp_server()
    run, weights = clip_run
    video = write_timed_video(tmp_path / "cam.mp4", (np.arange(20 * 25) * 40).tolist(), rate=25, codec="libx264")
    server = RtspServer(video, free_port())
    stop, watching = threading.Event(), threading.Event()
    seen: list[dict] = []

    def on_event(record: dict) -> None:
        seen.append(record)
        if record["kind"] == "stream-up":
            threading.Timer(3.0, stop.set).start()  # a few snippets after the outage, then stop

    def announce(line: str) -> None:
        if line.startswith("watching "):
            watching.set()

    def restart() -> None:
        if watching.wait(60):
            time.sleep(2.5)
            server.kill()
            time.sleep(DOWN_S)
            server.start()

    safety = threading.Timer(90, stop.set)
    server.start()
    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    safety.start()
    timeline = tmp_path / "timeline.csv"
    try:
        with caplog.at_level(logging.WARNING, logger="adplg"):
            report = watch(f"rtsp://127.0.0.1:{server.port}/cam", run.checkpoint, weights=weights, device="cpu",
                           delay=1, rules=AlertRules(on_threshold=0.0), stall_timeout=3.0, backoff_s=0.2,
                           max_retries=20, csv_path=timeline, events=tmp_path / "events.jsonl", stop=stop,
                           on_event=on_event, announce=announce)
    finally:
        safety.cancel()
        restarter.join(30)
        server.kill()
    assert report.stopped_by == "stop requested"
    assert report.reconnections == 1 and report.reconnect_attempts >= 1, report.outages
    assert "reconnected after" in caplog.text

    kinds = [e["kind"] for e in seen if e["kind"] != "updated"]
    down_at = kinds.index("stream-down")
    assert kinds[down_at - 2:down_at + 3] == ["started", "ended", "stream-down", "stream-up", "started"], kinds
    down, up = (next(e for e in seen if e["kind"] == kind) for kind in ("stream-down", "stream-up"))
    assert up["down_s"] >= DOWN_S - 0.2 and up["attempts"] >= 1
    assert up["at_s"] - down["at_s"] == pytest.approx(up["down_s"], abs=0.5)  # the gap is the outage's length
    (outage,) = report.outages
    assert outage["start_s"] == down["at_s"] and outage["end_s"] == up["at_s"]

    with open(timeline, newline="") as handle:
        rows = [(float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(handle)]
    assert len(rows) == report.snippets
    before = [r for r in rows if r[1] <= down["at_s"] + 1e-6]
    after = [r for r in rows if r[0] >= up["at_s"] - 1e-6]
    assert before and after and len(before) + len(after) == len(rows)  # no snippet spans the outage
    assert all(end - start < 1.0 for start, end in rows)  # 16 frames at 25 fps each: 0.64 s
    assert after[0][0] == pytest.approx(up["at_s"]) and after[0][0] - before[-1][1] >= DOWN_S - 0.2
