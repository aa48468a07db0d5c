"""Issue 28: the camera service's HTTP side, scraped over real HTTP: /health (503 while a camera is down, the
others going on), /metrics parsed as Prometheus text, /events, the bearer token, and stream credentials never shown
(health, events, logs, status lines)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import urllib.error
import urllib.request

from media import write_video
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import FakeSink, settings, start, wait_for
from shared_helpers import free_port

from adplg.conventions import SNIPPET_FRAMES
from adplg.service.config import parse_service_config
from adplg.service.redact import redact_text, redact_url
from adplg.service.runner import Service

pytest_plugins = ["watch_models"]  # the clip_run fixture

SECRET = "hunter2"


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, str | None], float]:
    """``{(sample name, camera label): value}`` of a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_bucket"):
                out[(s.name, s.labels.get("camera"))] = s.value
    return out


def test_redaction():
    assert redact_url(f"rtsp://admin:{SECRET}@10.0.0.2:554/s1") == "rtsp://admin:***@10.0.0.2:554/s1"
    assert redact_url(f"http://cam/snap.cgi?user=admin&password={SECRET}&ch=1") == (
        "http://cam/snap.cgi?user=admin&password=***&ch=1")
    assert redact_url("rtsp://cam.local/live") == "rtsp://cam.local/live"
    assert redact_url("/dev/video0") == "/dev/video0"
    text = f"cannot open rtsp://u:{SECRET}@h/x: Connection refused: 'rtsp://u:{SECRET}@h/x'"
    assert SECRET not in redact_text(text) and redact_text(text).count("u:***@h") == 2


def test_a_down_camera_is_503_while_the_other_goes_on(clip_run, tmp_path, caplog, monkeypatch):
    run, weights = clip_run
    video = write_video(tmp_path / "good.mp4", 40 * SNIPPET_FRAMES, fps=25, seed=1)
    bad = f"rtsp://viewer:{SECRET}@127.0.0.1:{free_port()}/cam"  # nothing listens there
    monkeypatch.setenv("ADPLG_TEST_TOKEN", "t0ken")
    config = settings(run, weights, tmp_path / "out", {"good": str(video), "bad": bad}, realtime=True,
                      rules={"on_threshold": 0.0},
                      http={"host": "127.0.0.1", "port": 0, "token_env": "ADPLG_TEST_TOKEN"})
    posted: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config["webhook"] = {"url": f"http://127.0.0.1:{hook.server_address[1]}/hook"}
    said: list[str] = []
    sink = FakeSink()
    with caplog.at_level(logging.DEBUG, logger="adplg"):
        service = Service(parse_service_config(config), sinks=[sink], say=said.append)
        thread = start(service)
        try:
            wait_for(lambda: "bad" in service.cameras and service.cameras["bad"].state == "down", 30, "bad down")
            good = service.cameras["good"]
            wait_for(lambda: good.report.snippets >= 2, 60, "good camera scoring")
            base = service.http.url

            assert get(f"{base}/health")[0] == 401  # no token
            assert get(f"{base}/health", "wrong")[0] == 401
            code, body = get(f"{base}/health", "t0ken")
            health = json.loads(body)
            assert code == 503 and health["status"] == "degraded" and health["down"] == ["bad"]
            assert health["cameras"]["bad"]["state"] == "down" and not health["cameras"]["bad"]["connected"]
            assert health["cameras"]["bad"]["source"] == f"rtsp://viewer:***@127.0.0.1:{bad.split(':')[3]}"
            assert health["cameras"]["bad"]["last_error"]
            record = health["cameras"]["good"]
            assert record["connected"] and record["state"] == "up" and record["dropped"] == 0
            assert record["frames"] > 0 and record["lag_s"] >= 0 and "realtime_factor" in record
            scored = good.report.snippets
            wait_for(lambda: good.report.snippets > scored, 30, "the good camera goes on")

            code, body = get(f"{base}/metrics", "t0ken")
            assert code == 200
            metrics = samples(body.decode())
            assert metrics[("adplg_frames_total", "good")] > 0
            assert metrics[("adplg_snippets_total", "good")] >= 2
            assert metrics[("adplg_dropped_frames_total", "good")] == 0
            assert metrics[("adplg_camera_up", "good")] == 1 and metrics[("adplg_camera_down", "bad")] == 1
            assert metrics[("adplg_alerts_total", "good")] >= 1  # threshold 0: an alert at once
            assert metrics[("adplg_score_latency_seconds_count", "good")] >= 2
            assert metrics[("adplg_outages_total", "bad")] == 1
            assert metrics[("adplg_backbone_snippets_total", None)] >= 2

            code, body = get(f"{base}/events?camera=good", "t0ken")
            events = json.loads(body)
            assert code == 200 and events and all(e["camera"] == "good" for e in events)
            assert events[0]["kind"] == "new" and events[0]["event_id"].startswith("good-")
            assert get(f"{base}/nothing", "t0ken")[0] == 404
        finally:
            service.stop()
            thread.join(30)
        hook.shutdown()
    (down,) = [e for e in sink.events if e["camera"] == "bad"]
    assert down["kind"] == "stream_down"
    assert posted == sink.events  # the webhook got every event (sent before the service stopped)
    logged = caplog.text + "\n".join(said) + (tmp_path / "out" / "events.jsonl").read_text()
    assert "viewer:***@127.0.0.1" in logged  # the URL is shown, redacted
    assert SECRET not in logged and SECRET not in json.dumps(health)
