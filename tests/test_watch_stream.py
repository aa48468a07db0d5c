"""Issues 25 and 26, the live path: one clock (presentation times) for everything a live timeline says, a closed
stdout, refused settings, a SIGTERM while the model loads, and the webhook's signature and failures. Outages over a
real restarted RTSP server: ``tests/test_watch_outages.py``."""

from __future__ import annotations

import csv
import hashlib
import hmac
import http.server
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from media import write_timed_video, write_video

from adplg.cli.main import main
from adplg.conventions import SNIPPET_FRAMES

pytest_plugins = ["watch_models"]  # the clip_run fixture

RATE = 25  # the nominal rate the clips declare
# 6 snippets: the first 3 at 40 ms a frame, the last 3 at 120 ms a frame (a camera lowering its rate at night)
PTS_MS = np.concatenate([[0], np.cumsum([40] * 48 + [120] * 47)]).astype(int)  # [96]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _watch_cmd(run, weights, video: Path, *flags: str) -> list[str]:
    return ["watch", str(video), "--checkpoint", str(run.checkpoint), "--weights", str(weights), "--device", "cpu",
            *flags]


def test_events_csv_and_alert_rules_share_the_presentation_clock(clip_run, tmp_path, capsys):
    """A variable-frame-rate clip lasts 7.7 s by its presentation times but 96 / 25 = 3.84 s by frame index / fps:
    the events' times and duration, the minimum duration and the CSV all say 7.7 s."""
    run, weights = clip_run
    video = write_timed_video(tmp_path / "vfr.mkv", PTS_MS, rate=RATE)
    events, timeline = tmp_path / "events.jsonl", tmp_path / "timeline.csv"
    # everything alerts (threshold 0); 5 s is longer than the frame-index clock's 3.84 s, shorter than the 7.7 s
    assert main(_watch_cmd(run, weights, video, "--threshold", "0", "--min-duration", "5", "--events", str(events),
                           "--csv", str(timeline))) == 0
    err = capsys.readouterr().err
    assert "times: presentation times" in err
    rows = _read_csv(timeline)
    starts = np.array([float(r["start_s"]) for r in rows])
    np.testing.assert_allclose(starts, PTS_MS[::SNIPPET_FRAMES] / 1000, atol=1e-3)
    end = float(rows[-1]["end_s"])
    assert end == pytest.approx(PTS_MS[-1] / 1000 + 1 / RATE, abs=0.13)  # the last frame's end
    records = [json.loads(line) for line in events.read_text().splitlines()]
    ended = [r for r in records if r["kind"] == "ended"]
    assert len(ended) == 1, records  # the minimum duration is measured on the same clock: 7.7 s >= 5 s
    (alert,) = ended
    assert alert["start_s"] == pytest.approx(0.0) and alert["end_s"] == pytest.approx(end, abs=1e-6)
    assert alert["duration_s"] == pytest.approx(end, abs=1e-5)
    assert (alert["start_frame"], alert["end_frame"]) == (0, 96)
    assert "start_pts_s" not in alert  # one clock: no second pair of times


def test_a_closed_stdout_ends_the_json_lines_quietly(clip_run, tmp_path):
    """``adplg watch ... --events - | head -1``: the reader goes away after the first line; the CSV still gets every
    row, the exit status is 0 and there is no traceback."""
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 10 * SNIPPET_FRAMES, fps=RATE, seed=7)  # 6.4 s in real time
    timeline = tmp_path / "timeline.csv"
    proc = subprocess.Popen([sys.executable, "-m", "adplg.cli.main",
                             *_watch_cmd(run, weights, video, "--realtime", "--delay", "1", "--threshold", "0",
                                         "--events", "-", "--csv", str(timeline))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # head -1
        proc.stdout.close()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads(first)["kind"] == "started"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "broken pipe" in err  # said once, on stderr
    assert len(_read_csv(timeline)) == 10  # every snippet scored and written


def test_sigterm_while_the_model_loads_exits_promptly_writing_nothing(clip_run, tmp_path):
    """A SIGTERM before the first frame is scored (here: while the backbone loads, made slow on purpose) exits at once
    with a message, status 0, no traceback, and no output file created."""
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 2 * SNIPPET_FRAMES, fps=RATE, seed=8)
    loading = tmp_path / "loading"
    slow_load = ("import sys, time\n"
                 "import adplg.features.extractors as extractors\n"
                 "from adplg.cli.main import main\n"
                 "real = extractors.extractor_for_model\n"
                 "def slow(*args, **kwargs):\n"
                 f"    open({str(loading)!r}, 'w').close()\n"
                 "    time.sleep(60)\n"
                 "    return real(*args, **kwargs)\n"
                 "extractors.extractor_for_model = slow\n"
                 "sys.exit(main(sys.argv[1:]))\n")
    events, timeline = tmp_path / "events.jsonl", tmp_path / "timeline.csv"
    proc = subprocess.Popen([sys.executable, "-c", slow_load,
                             *_watch_cmd(run, weights, video, "--events", str(events), "--csv", str(timeline))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not loading.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert loading.exists(), proc.communicate(timeout=5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 10  # not after the 60 s load
    assert "Traceback" not in err
    assert "stopped by SIGTERM while loading" in err and "nothing was written" in err
    assert not events.exists() and not timeline.exists()


def test_a_delay_beyond_the_window_and_a_csv_of_another_header_are_refused(clip_run, tmp_path, capsys):
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 2 * SNIPPET_FRAMES, fps=RATE, seed=9)
    assert main(_watch_cmd(run, weights, video, "--window", "4", "--delay", "50")) == 2
    err = capsys.readouterr().err
    assert "adplg: error: --delay: " in err and "window - 1 = 3" in err and "got delay 50 with window 4" in err
    other = tmp_path / "other.csv"
    other.write_text("frame,time_s,score\n0,0.0,0.1\n")
    assert main(_watch_cmd(run, weights, video, "--csv", str(other))) == 2
    err = capsys.readouterr().err
    assert f"--csv: {other}" in err and "frame,time_s,score" in err and "snippet,start_s,end_s,score" in err
    assert other.read_text() == "frame,time_s,score\n0,0.0,0.1\n"  # untouched
    same = tmp_path / "same.csv"
    assert main(_watch_cmd(run, weights, video, "--csv", str(same))) == 0
    assert main(_watch_cmd(run, weights, video, "--csv", str(same))) == 0
    rows = _read_csv(same)
    assert len(rows) == 4 and [r["snippet"] for r in rows] == ["0", "1", "0", "1"]  # the same header: appended


class _SignedHook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, str]]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _SignedHook.received.append((body, self.headers.get("X-Adplg-Signature", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_posts_are_signed_with_the_secret_which_is_never_shown(clip_run, tmp_path, monkeypatch, capsys,
                                                                       caplog):
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 2 * SNIPPET_FRAMES, fps=RATE, seed=10)
    server = http.server.HTTPServer(("127.0.0.1", 0), _SignedHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "correct horse battery staple"
    monkeypatch.setenv("CAM_HOOK_SECRET", secret)
    report_file = tmp_path / "report.json"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        with caplog.at_level(logging.DEBUG, logger="adplg"):
            assert main(_watch_cmd(run, weights, video, "--threshold", "0", "--webhook", url, "--webhook-secret-env",
                                   "CAM_HOOK_SECRET", "--report", str(report_file))) == 0
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    sent = len(_SignedHook.received)
    assert sent >= 2 and sent == json.loads(report_file.read_text())["webhook"]["sent"]
    for body, signature in _SignedHook.received:
        assert signature == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert f"webhook: {sent} sent, 0 failed, 0 dropped, 0 unsent" in err and "EVENTS LOST" not in err
    assert secret not in err and secret not in caplog.text and secret not in report_file.read_text()
    monkeypatch.delenv("CAM_HOOK_SECRET")
    assert main(_watch_cmd(run, weights, video, "--webhook", url, "--webhook-secret-env", "CAM_HOOK_SECRET")) == 2
    assert ("adplg: error: --webhook-secret-env: the environment variable CAM_HOOK_SECRET is not set"
            in capsys.readouterr().err)


def test_a_dead_webhook_is_said_on_stderr_and_in_the_final_line(clip_run, tmp_path, capsys, caplog):
    run, weights = clip_run
    video = write_video(tmp_path / "cam.mp4", 2 * SNIPPET_FRAMES, fps=RATE, seed=11)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="adplg"):
        assert main(_watch_cmd(run, weights, video, "--threshold", "0", "--webhook",
                               f"http://127.0.0.1:{port}/hook")) == 0
    warnings = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert len(warnings) == 1 and "was not delivered after 4 attempt(s)" in warnings[0], warnings  # rate-limited
    final = capsys.readouterr().err.strip().splitlines()[-1]
    assert final.startswith("stopped (end of stream)") and "webhook: 0 sent" in final and "EVENTS LOST" in final
