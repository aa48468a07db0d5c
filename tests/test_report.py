"""`adplg report`: the static review site built from `adplg score` outputs, its size on large folders and long
timelines, reviewers' verdicts and `adplg calibrate --verdicts`, and the site in a real headless browser (Debian's
chromium driven by Playwright; skipped with the reason when either is missing).

Set ADPLG_REPORT_SCREENSHOT=docs/report.png to keep the browser test's screenshot (the README's image)."""

import csv
import json
import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from backbone_weights import write_random_clip
from media import write_timed_video
from PIL import Image

from adplg.alert_rules import AlertRules, alert_segments
from adplg.cli.main import main
from adplg.data.gt import SnippetLayout
from adplg.errors import AdplgError
from adplg.inference.calibration import false_alarm_rate
from adplg.inference.timeline import Timeline, write_timeline
from adplg.report import build_report, downsample_curve, false_alert_timelines, read_verdicts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FPS = 25
VIDEO_FRAMES = (112, 96, 128)  # 7, 6 and 8 snippets of 16 frames


def _index_data(out: Path) -> dict:
    text = (out / "index-data.js").read_text()
    return json.loads(text.removeprefix("window.ADPLG_INDEX = ").rstrip().removesuffix(";"))


def _page_data(page: Path) -> dict:
    found = re.search(r'<script type="application/json" id="video-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(found.group(1))


def _frames(video: Path) -> list[np.ndarray]:
    """Every decoded frame of a (small) video as float RGB ``[H, W, 3]``."""
    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in container.decode(video=0)]


def _alert_rows(out: Path) -> list[dict]:
    with open(out / "alerts.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------------ real score outputs
@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_checkpoint):
    """Three VP9 videos (Chromium plays VP9; PyAV encodes it) scored by `adplg score VIDEO` with the tiny 512-d
    checkpoint and a random CLIP backbone, at a threshold chosen from the first pass so that some alert starts after
    the first frame (a seek to it moves the player). Returns (scores folder, videos folder, checkpoint, threshold)."""
    root = tmp_path_factory.mktemp("report")
    videos = root / "videos"
    videos.mkdir()
    for seed, frames in enumerate(VIDEO_FRAMES):
        write_timed_video(videos / f"cam{seed + 1}.webm", [round(1000 * i / FPS) for i in range(frames)],
                          width=128, height=96, rate=FPS, codec="libvpx-vp9", seed=seed)
    weights = write_random_clip(root / "ViT-B-16.pt", width=32, layers=1)
    checkpoint, _ = tiny_checkpoint(512)
    scores = root / "scores"
    base = ["score", str(videos), "--checkpoint", str(checkpoint), "--weights", str(weights), "--out", str(scores),
            "--no-plot", "--quiet"]
    assert main(base) == 0
    curves = [np.array(json.loads((scores / f"cam{k + 1}.json").read_text())["score"]) for k in
              range(len(VIDEO_FRAMES))]
    levels = np.unique(np.concatenate(curves))
    # thresholds halfway between distinct stored scores (scores are rounded to 6 decimals in the JSON)
    for threshold in (levels[:-1] + levels[1:]) / 2:
        rules = AlertRules(on_threshold=float(threshold))
        starts = [g.start_frame for c in curves for g in alert_segments(c, FPS, rules)]
        if any(s > 0 for s in starts):
            break
    else:
        pytest.fail(f"no threshold gives an alert that starts after frame 0 (score levels {levels})")
    assert main([*base, "--threshold", f"{threshold:.9f}"]) == 0
    return scores, videos, checkpoint, float(threshold)


def test_report_from_score_outputs_lists_every_video_and_alert(scored, tmp_path):
    scores, videos, checkpoint, threshold = scored
    out = tmp_path / "report"
    summary = build_report(scores, out)  # source videos found through the extraction records
    records = {p.stem: json.loads(p.read_text()) for p in scores.glob("cam*.json")}
    index = _index_data(out)
    assert sorted(v["name"] for v in index["videos"]) == sorted(records) == ["cam1", "cam2", "cam3"]
    assert summary.videos == 3 and summary.linked_videos == 3 and not summary.notes

    expected = [(name, g["start_s"], g["end_s"], g["peak_score"]) for name in sorted(records)
                for g in records[name]["segments"]]
    rows = _alert_rows(out)
    assert len(rows) == summary.alerts == len(expected) > 0
    got = sorted((r["video"], float(r["start_s"]), float(r["end_s"]), float(r["peak_score"])) for r in rows)
    assert [g[0] for g in got] == [e[0] for e in sorted(expected)]
    assert np.allclose([g[1:] for g in got], [e[1:] for e in sorted(expected)], atol=1e-4)
    for row in rows:
        thumb = out / row["thumbnail"]
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG for every alert start
        assert float(row["duration_s"]) == pytest.approx(float(row["end_s"]) - float(row["start_s"]), abs=1e-3)
        # it shows the frame at the alert's start: the closest of the neighbouring frames (the square moves 3 px
        # per frame)
        frames = _frames(videos / f"{row['video']}.webm")
        image = np.asarray(Image.open(thumb).convert("RGB"), dtype=np.float64)
        start = round(float(row["start_s"]) * FPS)
        near = range(max(start - 4, 0), min(start + 5, len(frames)))
        differences = {i: np.abs(frames[i] - image).mean() for i in near}
        assert min(differences, key=differences.get) == start, differences

    meta = (out / "report-meta.js").read_text()
    assert str(checkpoint) in meta and f"{threshold:.6f}"[:6] in meta
    for entry in index["videos"]:
        record = records[entry["name"]]
        assert entry["alerts"] == len(record["segments"]) and entry["max_score"] == pytest.approx(
            record["max_score"], abs=1e-4)
        page = out / entry["page"]
        data = _page_data(page)
        assert data["s"] == pytest.approx(record["score"], abs=1e-4)  # short curves are kept whole
        src = re.search(r'<video id="player"[^>]* src="([^"]+)"', page.read_text()).group(1)
        assert (page.parent / src).resolve() == (videos / f"{entry['name']}.webm").resolve()  # relative link
        assert all(Path(f).is_file() for f in data["features"])


def test_videos_folder_and_missing_sources(scored, tmp_path):
    scores, videos, _, _ = scored
    elsewhere = tmp_path / "footage"
    (elsewhere / "day1").mkdir(parents=True)
    shutil.copy(videos / "cam2.webm", elsewhere / "day1" / "cam2.webm")
    copied = tmp_path / "scores"  # the score outputs without their features: only --videos can find a source
    copied.mkdir()
    for p in scores.glob("*.json"):
        record = json.loads(p.read_text())
        if "features" in record:
            record["features"] = [str(tmp_path / "gone" / Path(f).name) for f in record["features"]]
        (copied / p.name).write_text(json.dumps(record))
    summary = build_report(copied, tmp_path / "report", videos_dir=elsewhere, thumbnails=False)
    assert summary.linked_videos == 1 and summary.thumbnails == 0
    assert sorted(n.split(":")[0] for n in summary.notes) == ["cam1", "cam3"]
    page = (tmp_path / "report" / "videos" / "cam2.html").read_text()
    assert "day1/cam2.webm" in page
    assert "<video" not in (tmp_path / "report" / "videos" / "cam1.html").read_text()
    assert "Source video not found" in (tmp_path / "report" / "index.html").read_text()


# ------------------------------------------------------------------------------------------------ size and scale
def test_downsampling_keeps_the_extremes():
    rng = np.random.default_rng(0)
    n = 200_003
    times, scores = np.arange(n) / 30.0, rng.uniform(0.2, 0.6, n)
    spike, dip = rng.integers(1, n - 1, 2)
    scores[spike], scores[dip] = 0.97, 0.01
    t, s = downsample_curve(times, scores, 2000)
    assert len(t) <= 2000 and np.all(np.diff(t) > 0)
    assert s.max() == 0.97 and t[np.argmax(s)] == times[spike]
    assert s.min() == 0.01 and t[np.argmin(s)] == times[dip]
    assert t[0] == times[0] and t[-1] == times[-1]
    short_t, short_s = downsample_curve(times[:500], scores[:500], 2000)
    assert np.array_equal(short_s, scores[:500]) and np.array_equal(short_t, times[:500])


def _synthetic_scores(folder: Path, videos: int, snippets: int, fps: float, rules: AlertRules, seed: int = 0):
    """``videos`` score outputs in `adplg score`'s format (write_timeline) with random snippet scores."""
    rng = np.random.default_rng(seed)
    summaries = []
    for k in range(videos):
        timeline = Timeline(name=f"video{k:04d}", snippet_scores=rng.beta(2, 5, snippets), fps=fps, fps_source="--fps")
        summaries.append(write_timeline(folder, timeline, rules, plot=False))
    (folder / "summary.json").write_text(json.dumps({"checkpoint": [], "alert_rules": rules.to_dict(),
                                                     "alert_rules_source": "given", "videos": summaries}))
    return summaries


def test_a_thousand_videos_make_a_small_index(tmp_path):
    rules = AlertRules(on_threshold=0.6, off_threshold=0.5, min_duration_s=0.5, merge_gap_s=0.0)
    summaries = _synthetic_scores(tmp_path / "scores", 1000, 12, 25.0, rules)
    out = tmp_path / "report"
    summary = build_report(tmp_path / "scores", out, thumbnails=False)
    index = _index_data(out)
    assert len(index["videos"]) == summary.videos == 1000
    assert len(_alert_rows(out)) == sum(len(s["segments"]) for s in summaries) == summary.alerts > 0
    index_bytes = sum((out / f).stat().st_size for f in ("index.html", "index-data.js", "report-meta.js"))
    largest_page = max(p.stat().st_size for p in (out / "videos").glob("*.html"))
    print(f"1000 videos: index {index_bytes / 1e3:.0f} kB, largest page {largest_page / 1e3:.1f} kB, "
          f"build {summary.seconds:.1f} s")
    assert index_bytes < 1_000_000 and largest_page < 100_000
    assert len(list((out / "videos").glob("*.html"))) == 1000


def test_a_ten_hour_timeline_makes_a_small_page(tmp_path):
    fps, hours = 10.0, 10
    snippets = int(hours * 3600 * fps / 16)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.05, 0.4, snippets)
    peak = int(rng.integers(snippets // 3, snippets // 2))
    scores[peak] = 0.99  # one 16-frame snippet (0.53 s) in 10 hours
    folder = tmp_path / "scores"
    timeline = Timeline(name="long", snippet_scores=scores, fps=fps, fps_source="--fps")
    write_timeline(folder, timeline, AlertRules(on_threshold=0.9), plot=False)
    summary = build_report(folder, tmp_path / "report", thumbnails=False)
    page = tmp_path / "report" / "videos" / "long.html"
    data = _page_data(page)
    print(f"10-hour timeline ({snippets * 16} frames): page {page.stat().st_size / 1e3:.0f} kB, "
          f"build {summary.seconds:.1f} s")
    assert page.stat().st_size < 150_000 and len(data["t"]) <= 2000
    assert max(data["s"]) == pytest.approx(0.99) and data["t"][int(np.argmax(data["s"]))] == pytest.approx(
        peak * 16 / fps, abs=1e-3)
    assert data["duration_s"] == pytest.approx(hours * 3600, rel=1e-6)
    rows = _alert_rows(tmp_path / "report")
    assert len(rows) == 1 and float(rows[0]["start_s"]) == pytest.approx(peak * 16 / fps, abs=1e-3)


# ------------------------------------------------------------------------------------------------ errors
def test_bad_inputs_are_named(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no adplg score outputs" in capsys.readouterr().err and not (tmp_path / "r").exists()

    folder = tmp_path / "scores"
    _synthetic_scores(folder, 2, 4, 25.0, AlertRules(on_threshold=0.5))
    broken = folder / "video0001.json"
    broken.write_text('{"video": "video0001", "fps": 25, "score": [0.1,')
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "not valid JSON" in err

    broken.write_text(json.dumps({"video": "video0001", "fps": 25, "duration_s": 1, "time_s": [0, 0.04],
                                  "score": [0.1], "segments": [], "alert_rules": {}}))
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "same length" in err and "2 and 1" in err

    broken.unlink()
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "video0001.json" in capsys.readouterr().err

    _synthetic_scores(folder, 2, 4, 25.0, AlertRules(on_threshold=0.5))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["report", str(folder), "--out", str(blocker)]) == 2
    assert str(blocker) in capsys.readouterr().err
    assert main(["report", str(folder), "--out", str(folder)]) == 2
    assert "scores folder itself" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_bad_verdict_files_are_named(tmp_path):
    path = tmp_path / "verdicts.json"
    good = {"format": "adplg-verdicts", "version": 1, "verdicts": [
        {"video": "cam1", "start_s": 1.0, "end_s": 2.0, "verdict": "false_alert", "features": []}]}
    cases = [("{not json", "not valid JSON"), (json.dumps([1]), "adplg-verdicts"),
             (json.dumps({**good, "version": 7}), "expected version 1, got 7"),
             (json.dumps({**good, "verdicts": [{**good["verdicts"][0], "verdict": "maybe"}]}), "'maybe'"),
             (json.dumps({**good, "verdicts": [{**good["verdicts"][0], "end_s": 0.5}]}), "start_s < end_s")]
    for text, expected in cases:
        path.write_text(text)
        with pytest.raises(AdplgError, match=re.escape(expected)) as caught:
            read_verdicts(path)
        assert str(path) in str(caught.value)
    with pytest.raises(AdplgError, match="not found"):
        read_verdicts(tmp_path / "none.json")
    path.write_text(json.dumps(good))
    assert read_verdicts(path).false_alerts[0].start_s == 1.0


# ------------------------------------------------------------------------------------------------ verdicts in calibrate
def _verdict_on_an_alert(scores: Path, path: Path, *kinds: str) -> tuple[dict, dict, Path]:
    """A verdicts file at ``path`` with one verdict of each of ``kinds`` (false_alert / true_alert) on the first
    alert of the scored videos: (the video's record, the alert, path)."""
    record = json.loads((scores / "cam1.json").read_text())
    if not record["segments"]:
        record = next(r for r in (json.loads(p.read_text()) for p in sorted(scores.glob("cam*.json")))
                      if r["segments"])
    alert = record["segments"][0]
    path.write_text(json.dumps({"format": "adplg-verdicts", "version": 1, "scores_dir": str(scores),
                                "verdicts": [{"video": record["video"], "start_s": alert["start_s"],
                                              "end_s": alert["end_s"], "verdict": kind,
                                              "features": record["features"]} for kind in kinds]}))
    return record, alert, path


def test_calibrate_counts_false_alerts_as_normal_footage(scored, tmp_path, capsys):
    import adplg

    scores, _, checkpoint, _ = scored
    record, alert, verdicts = _verdict_on_an_alert(scores, tmp_path / "verdicts.json", "false_alert")
    scorer = adplg.load(checkpoint)
    spans = false_alert_timelines(scorer, read_verdicts(verdicts))
    times, frame_scores = np.array(record["time_s"]), np.array(record["score"])
    inside = (times >= alert["start_s"]) & (times < alert["end_s"])
    assert len(spans) == 1 and spans[0].frame_scores == pytest.approx(frame_scores[inside], abs=1e-6)

    rules_file = tmp_path / "rules.yaml"
    normal = scores / "features"
    target = 0.05
    assert main(["calibrate", str(normal), "--checkpoint", str(checkpoint), "--target-far", str(target),
                 "--verdicts", str(verdicts), "--out", str(rules_file), "--quiet"]) == 0
    assert "1 false alert(s)" in capsys.readouterr().out
    rules = AlertRules.load(rules_file)
    used = rules.calibration["verdicts"]
    assert used["false_alerts"] == 1 and used["false_alert_seconds"] == pytest.approx(inside.sum() / FPS, abs=1e-3)
    assert any("(false alert)" in name for name in rules.calibration["normal_videos"])
    normal_timelines = scorer.score(normal)
    assert false_alarm_rate([(t.frame_scores, t.fps) for t in [*normal_timelines, *spans]], rules) <= target

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "adplg-verdicts", "version": 1, "scores_dir": str(scores), "verdicts": [
        {"video": record["video"], "start_s": 500.0, "end_s": 501.0, "verdict": "false_alert",
         "features": record["features"]}]}))
    assert main(["calibrate", str(normal), "--checkpoint", str(checkpoint), "--target-far", "0.05",
                 "--verdicts", str(bad), "--out", str(rules_file), "--quiet"]) == 2
    assert "outside the video" in capsys.readouterr().err


def test_library_calibration_with_verdicts_equals_the_cli(scored, tmp_path, capsys):
    """``adplg.calibrate(..., verdicts=)`` gives the rules of ``adplg calibrate --verdicts``: the same thresholds,
    statistics and recorded verdicts; read verdicts and already scored timelines give them too, and verdicts with
    no false alert add nothing but their record."""
    import adplg

    scores, _, checkpoint, _ = scored
    verdicts = _verdict_on_an_alert(scores, tmp_path / "verdicts.json", "false_alert", "true_alert")[2]
    normal, target = scores / "features", 0.05
    by_cli, by_library = tmp_path / "cli.alerts.yaml", tmp_path / "library.alerts.yaml"
    assert main(["calibrate", str(normal), "--checkpoint", str(checkpoint), "--target-far", str(target),
                 "--verdicts", str(verdicts), "--out", str(by_cli), "--quiet"]) == 0
    assert "1 false alert(s)" in capsys.readouterr().out
    rules = adplg.calibrate(checkpoint, normal, target, verdicts=verdicts, save_to=by_library)
    assert AlertRules.load(by_library) == AlertRules.load(by_cli) == rules
    used = rules.calibration["verdicts"]
    assert used["file"] == str(verdicts) and used["false_alerts"] == 1 and used["true_alerts_not_used"] == 1
    assert used["false_alert_seconds"] > 0

    scorer = adplg.load(checkpoint)
    timelines = scorer.score(normal)
    assert scorer.calibrate(timelines, target, verdicts=read_verdicts(verdicts), save_to=False) == rules
    assert scorer.rules == rules and scorer.rules_source == "calibrated in memory"
    true_only = _verdict_on_an_alert(scores, tmp_path / "true.json", "true_alert")[2]
    plain = scorer.calibrate(timelines, target, save_to=False)
    reviewed = scorer.calibrate(timelines, target, verdicts=true_only, save_to=False)
    assert reviewed.calibration.pop("verdicts") == {"file": str(true_only), "false_alerts": 0,
                                                    "true_alerts_not_used": 1, "false_alert_seconds": 0.0}
    assert reviewed == plain
    assert main(["calibrate", str(normal), "--checkpoint", str(checkpoint), "--target-far", str(target),
                 "--verdicts", str(true_only), "--out", str(by_cli), "--quiet"]) == 0
    assert f"note: {true_only} marks no false alert" in capsys.readouterr().out


def test_frame_level_span_timeline_keeps_the_clock():
    span = Timeline(name="x", snippet_scores=np.array([0.1, 0.9, 0.3]), fps=25.0, fps_source="--fps",
                    layout=SnippetLayout(kind="uniform", frames_per_snippet=1))
    assert span.frame_scores.tolist() == [0.1, 0.9, 0.3] and span.duration_s == pytest.approx(3 / 25)


# ------------------------------------------------------------------------------------------------ the browser
def _playwright():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; the browser itself is Debian's chromium)")
    return sync_playwright


def test_report_in_a_headless_browser(scored, tmp_path):
    sync_playwright = _playwright()
    scores, videos, _, _ = scored
    out = tmp_path / "report"
    build_report(scores, out)
    index = _index_data(out)
    # a video whose first alert starts after 0 s: seeking to it must move the player
    target = next(v for v in index["videos"] if any(a["start_s"] > 0 for a in _page_data(out / v["page"])["alerts"]))
    alerts = _page_data(out / target["page"])["alerts"]
    k = next(i for i, a in enumerate(alerts) if a["start_s"] > 0)

    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 1000}, accept_downloads=True)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto((out / "index.html").as_uri())
            names = page.locator("#videos tbody tr td:first-child").all_inner_texts()
            assert sorted(names) == sorted(v["name"] for v in index["videos"])
            peaks = [float(x) for x in page.locator("#videos tbody tr td:nth-child(3)").all_inner_texts()]
            assert peaks == sorted(peaks, reverse=True)  # sorted by peak score at first
            page.click("#videos th[data-key=alerts]")
            counts = [int(x) for x in page.locator("#videos tbody tr td:nth-child(4)").all_inner_texts()]
            assert counts == sorted(counts, reverse=True)

            page.click(f"#videos a:text-is('{target['name']}')")
            page.wait_for_selector("#alerts tbody tr")
            page.wait_for_function("document.getElementById('player').readyState >= 1")
            assert page.evaluate("document.getElementById('player').currentTime") == 0
            page.evaluate("window.seekedAt = null; document.getElementById('player').addEventListener('seeked', "
                          "() => { window.seekedAt = document.getElementById('player').currentTime; })")
            page.click(f"#alerts tr[data-alert='{k}'] button.seek")
            page.wait_for_function("window.seekedAt !== null", timeout=10_000)
            assert page.evaluate("window.seekedAt") == pytest.approx(alerts[k]["start_s"], abs=1.5 / FPS)

            page.click(f"#alerts tr[data-alert='{k}'] button.mark-false")
            assert page.get_attribute(f"#alerts tr[data-alert='{k}'] button.mark-false", "aria-pressed") == "true"
            with page.expect_download() as download:
                page.click("#download-verdicts")
            saved = tmp_path / "verdicts.json"
            download.value.save_as(saved)
            verdicts = read_verdicts(saved)
            assert [(v.video, v.start_s, v.verdict) for v in verdicts.items] == [
                (target["name"], pytest.approx(alerts[k]["start_s"], abs=1e-3), "false_alert")]

            page.wait_for_function("document.getElementById('player').readyState >= 2")  # the frame is decoded
            page.evaluate("window.scrollTo(0, 0)")
            if os.environ.get("ADPLG_REPORT_SCREENSHOT"):
                page.wait_for_timeout(1000)  # for the README image only: the player's loading spinner fades out
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
            if os.environ.get("ADPLG_REPORT_SCREENSHOT"):
                Path(os.environ["ADPLG_REPORT_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, os.environ["ADPLG_REPORT_SCREENSHOT"])
            page.reload()  # verdicts survive a reload (localStorage)
            page.wait_for_selector("#alerts tbody tr")
            assert page.get_attribute(f"#alerts tr[data-alert='{k}'] button.mark-false", "aria-pressed") == "true"
        finally:
            browser.close()
    assert not problems, problems


def test_float32_scores_are_not_alerted_above_their_maximum():
    # false-alert spans often push calibration above every normal score: the threshold just above the highest
    # float32 score must not round back onto it (NumPy compares float32 arrays with a Python float in float32)
    from adplg.inference.calibration import calibrate

    scores = np.array([0.1, 0.2336973101, 0.1], dtype=np.float32)
    rules = calibrate([(scores, 25.0)], target_far=0.0)
    assert rules.on_threshold > float(scores.max()) and rules.calibration["achieved_far"] == 0.0
    assert false_alarm_rate([(scores, 25.0)], rules) == 0.0


def test_names_are_escaped_and_annotations_drawn(tmp_path):
    name = "Lobby <cam 1> & \"back\""
    folder = tmp_path / "scores"
    timeline = Timeline(name=name, snippet_scores=np.array([0.1, 0.9, 0.8, 0.1]), fps=25.0, fps_source="--fps")
    (folder / "summary.json").parent.mkdir(parents=True)
    summaries = [write_timeline(folder, timeline, AlertRules(on_threshold=0.5), plot=False)]
    (folder / "summary.json").write_text(json.dumps({"checkpoint": [],
                                                     "alert_rules": AlertRules(on_threshold=0.5).to_dict(),
                                                     "videos": summaries}))
    out = tmp_path / "report"
    build_report(folder, out, thumbnails=False, annotations={name: [(25, 50)]})  # frames 25-50 at 25 fps
    entry = _index_data(out)["videos"][0]
    assert entry["name"] == name and entry["alerts"] == 1
    page = out / "videos" / "Lobby_cam_1_back.html"
    assert entry["page"] == "videos/Lobby_cam_1_back.html" and page.is_file()
    text = page.read_text()
    assert "<cam 1>" not in text and "Lobby &lt;cam 1&gt; &amp; &quot;back&quot;" in text
    assert _page_data(page)["video"] == name and _page_data(page)["annotations"] == [[1.0, 2.0]]
    assert _alert_rows(out)[0]["video"] == name
