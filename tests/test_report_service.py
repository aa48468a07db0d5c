"""`adplg report` on an `adplg serve` outputs folder (issue 28 item 6): events.jsonl merged into alerts and outages,
clips (remuxed by service/clips.py) and snapshots linked relative to the pages (and found again when the folder has
moved), alerts.csv, the CLI, and the page in a real headless browser (Debian's chromium through Playwright): camera
filter, the clip played in the page's <video>, a verdict downloaded."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import av
import numpy as np
import pytest
from media import write_timed_video
from PIL import Image
from test_report import CHROMIUM_ARGS, _playwright

from adplg.cli.main import main
from adplg.errors import AdplgError
from adplg.report import build_service_report, is_service_outputs, read_service_events, read_verdicts
from adplg.service.clips import ClipRecorder
from adplg.service.events import ServiceEvent

FPS = 25


def _service_data(out: Path) -> dict:
    text = (out / "index-data.js").read_text()
    return json.loads(text.removeprefix("window.ADPLG_SERVICE = ").rstrip().removesuffix(";"))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """An outputs folder as `adplg serve` leaves it: events.jsonl (a closed alert on ``door`` with its clip and
    snapshot, an open alert and an outage on ``yard``, a line torn by a crash), clips/ and snapshots/."""
    root = tmp_path_factory.mktemp("serve")
    folder = root / "adplg-serve"
    video = write_timed_video(root / "door.mp4", (np.arange(8 * FPS) * 1000 // FPS).tolist(), rate=FPS,
                              codec="libx264", gop=10)
    recorder = ClipRecorder(folder / "clips" / "door", "door", pre_s=1.0, post_s=1.0, latency_s=1.0)
    event_id, clip, finished = "door-20260101T120003-1", None, False
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if not packet.size:
                continue
            t = float(packet.pts * stream.time_base)
            if clip is None and t >= 3.5:  # raised half a second after its start
                clip = recorder.begin(event_id, 3.0, {"peak_score": 0.93})
            if not finished and t >= 5.5:
                recorder.finish(event_id, 5.0, {"mean_score": 0.74})
                finished = True
            recorder.packet(packet, t)
    recorder.close()
    assert clip.is_file()
    snapshot = folder / "snapshots" / "door" / "alert-0001.jpg"
    snapshot.parent.mkdir(parents=True)
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(snapshot)
    common = {"camera": "door", "event_id": event_id, "start_s": 3.0, "start_wall": "2026-01-01T12:00:03Z",
              "snapshot": str(snapshot), "clip": str(clip)}
    events = [ServiceEvent(kind="new", peak_score=0.81, mean_score=0.8, **common),
              ServiceEvent(kind="update", peak_score=0.93, mean_score=0.78, **common),
              ServiceEvent(kind="stream_down", camera="yard", start_s=10.0, start_wall="2026-01-01T12:01:00Z"),
              ServiceEvent(kind="end", end_s=5.0, end_wall="2026-01-01T12:00:05Z", peak_score=0.93, mean_score=0.74,
                           **common),
              ServiceEvent(kind="stream_up", camera="yard", start_s=10.0, end_s=14.0, outage_s=4.0,
                           end_wall="2026-01-01T12:01:04Z"),
              ServiceEvent(kind="new", camera="yard", event_id="yard-20260101T120200-1", start_s=20.0,
                           start_wall="2026-01-01T12:02:00Z", peak_score=0.7, mean_score=0.7,
                           clip=str(folder / "clips" / "yard" / "yard-20260101T120200-1.mp4"))]
    lines = [json.dumps(e.to_dict()) for e in events] + ['{"kind": "new", "camera": "yard", "event_id": "yard-2026']
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")
    (folder / ".adplg-output").write_text("serve\n")
    return folder


def test_events_are_merged_into_alerts_and_outages(outputs):
    alerts, outages, notes = read_service_events(outputs)
    door, yard = sorted(alerts, key=lambda a: a["camera"])
    assert door["open"] is False and (door["start_s"], door["end_s"]) == (3.0, 5.0)
    assert (door["peak_score"], door["mean_score"], door["end_wall"]) == (0.93, 0.74, "2026-01-01T12:00:05Z")
    assert yard["open"] is True and yard["end_s"] is None
    assert outages == [{"camera": "yard", "start_s": 10.0, "end_s": 14.0, "outage_s": 4.0,
                        "start_wall": "2026-01-01T12:01:00Z", "end_wall": "2026-01-01T12:01:04Z", "open": False}]
    assert len(notes) == 1 and "1 line(s) skipped" in notes[0] and "line 7" in notes[0]
    assert is_service_outputs(outputs) and not is_service_outputs(outputs / "clips")


def test_the_report_links_clips_and_snapshots_and_finds_them_after_a_move(outputs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(outputs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 camera(s), 2 alert(s); clip found for 1, snapshot for 1" in printed
    assert "1 alert clip(s) named in the events were not found" in printed  # yard's open alert
    data = _service_data(out)
    assert data["cameras"] == ["door", "yard"] and len(data["outages"]) == 1
    door = next(a for a in data["alerts"] if a["camera"] == "door")
    clip = (out / unquote(door["clip"])).resolve()
    assert clip == (outputs / "clips" / "door" / "door-20260101T120003-1.mp4").resolve()
    assert (out / unquote(door["snapshot"])).resolve() == (outputs / "snapshots/door/alert-0001.jpg").resolve()
    sidecar = json.loads(clip.with_suffix(".json").read_text())
    assert door["clip_offset_s"] == pytest.approx(3.0 - sidecar["clip_start_s"]) and door["clip_offset_s"] >= 1.0
    assert (door["duration_s"], door["peak_score"], door["start_wall"]) == (2.0, 0.93, "2026-01-01 12:00:03Z")
    with open(out / "alerts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["camera"], r["open"]) for r in rows] == [("door", "0"), ("yard", "1")]
    assert "adplg serve" in (out / "index.html").read_text() and (out / "assets" / "report.js").is_file()

    moved = tmp_path / "elsewhere" / "outputs"  # the events name the old absolute paths: found by file name
    shutil.copytree(outputs, moved)
    summary = build_service_report(moved, tmp_path / "report2")
    assert (summary.linked_videos, summary.thumbnails) == (1, 1)
    door = next(a for a in _service_data(tmp_path / "report2")["alerts"] if a["camera"] == "door")
    assert (tmp_path / "report2" / unquote(door["clip"])).resolve().is_relative_to(moved.resolve())

    with pytest.raises(AdplgError, match="events.jsonl not found"):
        build_service_report(outputs / "clips", tmp_path / "report3")
    assert is_service_outputs(outputs / "clips") is False


def test_the_service_report_in_a_headless_browser(outputs, tmp_path):
    sync_playwright = _playwright()
    out = tmp_path / "report"
    build_service_report(outputs, out)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 1000}, accept_downloads=True)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto((out / "index.html").as_uri())
            assert page.locator("#alerts tbody tr").count() == 2
            assert page.locator("#outages tbody tr td").all_inner_texts()[:1] == ["yard"]
            page.select_option("#camera", "door")
            assert page.locator("#alerts tbody tr td:first-child").all_inner_texts() == ["door"]
            assert page.evaluate("document.querySelector('#alerts tbody img').naturalWidth") == 64

            page.click("#alerts tr[data-event='door-20260101T120003-1'] button.play")
            page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=10_000)
            duration = page.evaluate("document.getElementById('player').duration")
            assert duration == pytest.approx(1.0 + 2.0 + 1.0, abs=0.5)  # pre + alert + post, within a GOP
            assert page.is_hidden("#player-error")

            page.click("#alerts tr[data-event='door-20260101T120003-1'] button.mark-false")
            with page.expect_download() as download:
                page.click("#download-verdicts")
            saved = tmp_path / "verdicts.json"
            download.value.save_as(saved)
            verdicts = read_verdicts(saved)
            assert [(v.video, v.start_s, v.end_s, v.verdict) for v in verdicts.items] == [
                ("door", 3.0, 5.0, "false_alert")]
            assert json.loads(saved.read_text())["verdicts"][0]["event_id"] == "door-20260101T120003-1"
            page.select_option("#camera", "")
            assert page.locator("#alerts tr[data-event='yard-20260101T120200-1'] td.clip").inner_text() == "not found"
        finally:
            browser.close()
    assert not problems, problems
