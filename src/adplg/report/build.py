"""Building the review site from a folder of ``adplg score`` outputs.

Input: ``SCORES_DIR`` as ``adplg score --out`` writes it: ``summary.json`` (checkpoint, alert rules, the videos) and
per video ``<name>.json`` (frame times and scores, alert segments, rules). Without ``summary.json`` every
``<name>.json`` holding a score timeline is read.

Output (``out_dir``; every file written atomically, so an interrupted build leaves each file old or new, never torn)::

    index.html           the videos, sortable by peak score, alert count, alerted time; checkpoint and rules
    index-data.js        the index's data (``window.ADPLG_INDEX``): a script, since fetch() of local files is
                         blocked under file://
    report-meta.js       what every page shares (``window.ADPLG_REPORT``): checkpoint, sha256, rules, report id
    videos/<name>.html   one page per video, its curve data inline (at most ``max_points`` points)
    thumbs/<name>-<k>.jpg  the frame at each alert's start (when the source video is found and PyAV can decode it)
    alerts.csv           one row per alert of every video
    assets/              report.css, report.js (plain JS, no CDN, no external fonts)

Source videos are found in ``videos_dir`` (by file name without extension, searched recursively), else through the
extraction record ``adplg score VIDEO`` keeps beside its features (``<out>/features/meta/<name>.json``, key
``source``). Nothing is copied: the player's ``src`` is the video's path *relative to the page*, so the report keeps
working when the report and the videos are moved together (a different drive on Windows gets an absolute
``file://`` URL).

Long timelines: each page carries at most ``max_points`` points of the curve (the minimum and the maximum of every
bucket of consecutive frames, :func:`downsample_curve`), so a peak of one frame in a 10-hour video is still drawn and
a page stays around 100 KB whatever the video's length.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import numpy as np

from adplg.errors import AdplgError
from adplg.io import atomic_write_bytes, atomic_write_text, check_output_owner, file_sha256, mark_output_dir
from adplg.report.scores import ScoredVideo, load_scored_video, read_scores

log = logging.getLogger(__name__)

MAX_POINTS = 2000  # curve points per page: about one per pixel of a wide screen
THUMB_WIDTH = 160  # pixels
ASSETS = ("report.css", "report.js")
# what the report writes into its folder (a folder without its marker holding one of them is never written into)
REPORT_OUTPUT_NAMES = ("index.html", "index-data.js", "report-meta.js", "videos", "thumbs", "alerts.csv", "assets")
# codecs Chromium and Firefox decode in a <video> element; others get a note on the page
BROWSER_CODECS = {"h264", "vp8", "vp9", "av1", "theora"}


@dataclass(kw_only=True)
class ReportSummary:
    """What :func:`build_report` wrote: the ``index`` page, ``alerts_csv``, how many ``videos`` and ``alerts``,
    how many source videos were found (``linked_videos``) and ``thumbnails`` written, and ``notes`` (videos not
    found, thumbnails that could not be decoded...)."""

    out_dir: Path
    index: Path
    alerts_csv: Path
    videos: int
    alerts: int
    linked_videos: int
    thumbnails: int
    notes: list[str]
    seconds: float


# ------------------------------------------------------------------------------------------------------ curves
def downsample_curve(times: np.ndarray, scores: np.ndarray,
                     max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points ``(times [P], scores [P])`` of the curve ``scores [N]`` at ``times [N]``.

    Longer curves are cut into ``(max_points - 2) // 2`` buckets of consecutive points; each bucket keeps its lowest
    and its highest point (in time order), plus the first and last point of the curve, so the maximum, the minimum
    and every local peak wider than a bucket survive. Curves of at most ``max_points`` points are returned as given.
    """
    times, scores = np.asarray(times), np.asarray(scores)
    n = len(scores)
    if max_points < 4:
        raise AdplgError(f"max_points: expected at least 4, got {max_points}")
    if n <= max_points:
        return times, scores
    buckets = (max_points - 2) // 2
    starts = np.linspace(0, n, buckets + 1).astype(np.int64)[:-1]  # every bucket holds >= 2 points as n > max_points
    bucket = np.repeat(np.arange(buckets), np.diff(np.append(starts, n)))
    index = np.arange(n)
    # the first index of each bucket's maximum / minimum: non-matching indices are n, and reduceat takes the smallest
    first_max = np.minimum.reduceat(np.where(scores == np.maximum.reduceat(scores, starts)[bucket], index, n), starts)
    first_min = np.minimum.reduceat(np.where(scores == np.minimum.reduceat(scores, starts)[bucket], index, n), starts)
    keep = np.unique(np.concatenate([[0, n - 1], first_max, first_min]))
    return times[keep], scores[keep]


# ------------------------------------------------------------------------------------------------------ sources
def _safe_name(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique version of a video name (for its page and thumbnails)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "video"
    safe, k = base, 2
    while safe.lower() in taken:
        safe, k = f"{base}-{k}", k + 1
    taken.add(safe.lower())
    return safe


def _index_videos(videos_dir: Path | None) -> dict[str, Path]:
    """``{name without extension: path}`` of every video file under ``videos_dir`` (the first in path order wins)."""
    from adplg.conventions import VIDEO_EXTENSIONS

    if videos_dir is None:
        return {}
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        what = "is a file" if videos_dir.exists() else "not found"
        raise AdplgError(f"--videos {videos_dir}: {what}; expected a folder holding the source videos")
    found: dict[str, Path] = {}
    for path in sorted(videos_dir.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            found.setdefault(path.stem, path)
    return found


def feature_files(video: ScoredVideo) -> list[Path]:
    """The video's feature files as absolute paths. They are recorded as ``adplg score`` was given them (maybe
    relative to where it ran), so each is looked up as recorded, then in ``<scores folder>/features`` (where
    ``adplg score VIDEO`` keeps them); one found nowhere is kept as recorded."""
    found = []
    for feature in video.features:
        beside = video.score_file.parent / "features" / Path(feature).name
        found.append((beside if not Path(feature).is_file() and beside.is_file() else Path(feature)).absolute())
    return found


def _recorded_source(video: ScoredVideo) -> Path | None:
    """The source video named by the extraction record beside the video's features, when that file exists."""
    from adplg.data.extraction import read_video_record

    for feature in feature_files(video)[:1]:
        try:
            record = read_video_record(feature.parent, video.name) or {}
        except AdplgError:
            return None
        source = record.get("source")
        return Path(source) if isinstance(source, str) and Path(source).is_file() else None
    return None


def relative_url(source: Path, page_dir: Path) -> str:
    """``source`` as a URL relative to ``page_dir`` (an absolute ``file://`` URL when no relative path exists)."""
    try:
        return quote(Path(os.path.relpath(source.resolve(), page_dir.resolve())).as_posix())
    except ValueError:  # another drive (Windows)
        return source.resolve().as_uri()


def write_thumbnails(source: Path, times_s: list[float], paths: list[Path], width: int = THUMB_WIDTH) -> str:
    """Write the frame shown at each of ``times_s`` seconds of ``source`` (the score clock: presentation time from
    the stream's start) as a JPEG ``width`` pixels wide at the matching ``paths``; returns the video's codec name.
    PyAV errors propagate (the caller turns them into a note on the page)."""
    from PIL import Image

    from adplg.features.video import frame_time_s, open_video

    container, stream = open_video(source)
    try:
        codec = stream.codec_context.name
        time_base, start = stream.time_base, stream.start_time or 0
        for t, path in sorted(zip(times_s, paths, strict=True)):
            container.seek(int(start + t / time_base), stream=stream, backward=True)
            shown = None
            for frame in container.decode(stream):
                frame_s = frame_time_s(frame, time_base, start)
                if shown is not None and frame_s is not None and frame_s > t + 1e-6:
                    break  # the previous frame is the one on screen at t
                shown = frame
            if shown is None:
                raise AdplgError(f"video {source}: no frame decodes at {t:.2f} s")
            image = shown.to_image()
            image.thumbnail((width, width * 4), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
            atomic_write_bytes(path, buffer.getvalue())
        return codec
    finally:
        container.close()


# ------------------------------------------------------------------------------------------------------ writing
def asset_text(name: str) -> str:
    """The text of the site's asset ``name`` (a template, the stylesheet, the script)."""
    return (resources.files("adplg.report") / "assets" / name).read_text(encoding="utf-8")


def script_json(data) -> str:
    """``data`` as compact JSON safe inside ``<script>`` (``<`` escaped, so ``</script>`` cannot end it)."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _checkpoint_sha256(checkpoints: list[str]) -> str | None:
    """The checkpoint's sha256 as :attr:`adplg.inference.scorer.Scorer.sha256` gives it (an ensemble: the sha256 of
    its members' hashes in order), or None when a checkpoint file is no longer there."""
    from adplg.checkpoints.format import checkpoint_file

    files = [checkpoint_file(c) for c in checkpoints]
    if not files or not all(f.is_file() for f in files):
        return None
    hashes = [file_sha256(f) for f in files]
    return hashes[0] if len(hashes) == 1 else hashlib.sha256(" ".join(hashes).encode()).hexdigest()


def _rules_html(rules: dict, source: str | None) -> str:
    on, off = rules.get("on_threshold"), rules.get("off_threshold")
    rows = [("on threshold", f"{on:.4f}" if isinstance(on, (int, float)) else "?"),
            ("off threshold", f"{off:.4f}" if isinstance(off, (int, float)) else "?"),
            ("minimum duration", f"{rules.get('min_duration_s', 0):g} s"),
            ("merge gap", f"{rules.get('merge_gap_s', 0):g} s")]
    calibration = rules.get("calibration") or {}
    if isinstance(calibration.get("target_far"), (int, float)):
        rows.append(("calibrated", f"target false-alarm rate {calibration['target_far']:.2%}, achieved "
                                   f"{calibration.get('achieved_far', float('nan')):.2%} on "
                                   f"{calibration.get('videos', '?')} normal video(s)"))
    if source:
        rows.append(("source", source))
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows) + "</dl>"


def _seconds_text(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:04.1f}" if hours else f"{int(minutes)}:{secs:04.1f}"


def video_codec(source: Path) -> str:
    """The codec name of the first video stream of ``source`` (PyAV; errors propagate)."""
    from adplg.features.video import open_video

    container, stream = open_video(source)
    try:
        return stream.codec_context.name
    finally:
        container.close()


def unplayable_codec(path: Path) -> str | None:
    """The codec of the video ``path`` when browsers may not play it (not in ``BROWSER_CODECS``); None when they can
    or when it cannot be probed (no PyAV, a damaged file: logged at debug level, never an error for the report)."""
    try:
        codec = video_codec(path)
    except ImportError:
        return None  # no PyAV: the thumbnails' note says so
    except Exception as exc:  # noqa: BLE001 - a damaged video costs its note, not the report
        log.debug("codec of %s unknown: %s", path, exc)
        return None
    return None if codec in BROWSER_CODECS else codec


def _codec_notes(source: Path | None) -> list[str]:
    """A note when the source video's codec is one browsers may not play (the same note on its page and the
    index, whether or not it has alerts)."""
    codec = None if source is None else unplayable_codec(source)
    if codec is None:
        return []
    return [f"The source video is {codec}, which browsers may not play (H.264, VP8, VP9 and AV1 play in Chromium); "
            f"the curve, alerts and thumbnails still work."]


def _thumbnails(video: ScoredVideo, source: Path | None, stem: Path, enabled: bool) -> tuple[list, list[str]]:
    """``(thumbnail URL relative to the video page or None per alert, notes)``: the frame at each alert's start,
    written at ``<stem>-<k>.jpg``, when the source video is there and decodes; otherwise a note says why not. The
    notes include the codec note of :func:`_codec_notes`."""
    thumbs: list[str | None] = [None] * len(video.segments)
    if source is None:
        return thumbs, ["Source video not found (pass --videos DIR): no player and no thumbnails."]
    notes = _codec_notes(source)
    if not enabled or not video.segments:
        return thumbs, notes
    paths = [stem.with_name(f"{stem.name}-{k + 1:03d}.jpg") for k in range(len(video.segments))]
    try:
        write_thumbnails(source, [g["start_s"] for g in video.segments], paths)
    except ImportError as exc:
        return thumbs, [*notes, f"No thumbnails: decoding needs PyAV and Pillow (pip install adplg[video]); {exc}"]
    except Exception as exc:  # noqa: BLE001 - a damaged video costs its thumbnails, not the report
        return thumbs, [*notes, f"No thumbnails: {source} could not be decoded ({type(exc).__name__}: {exc})"]
    return [f"../{stem.parent.name}/{p.name}" for p in paths], notes


def dropped_spans(video: ScoredVideo) -> list[tuple[float, float]]:
    """``[(start_s, end_s), ...]``: spans of ``video`` that reached its rules' on threshold but raised no alert,
    being shorter than their minimum duration (as ``adplg score`` wrote them, else found from the scores)."""
    from adplg.alert_rules import AlertRules, dropped_runs

    try:
        rules = AlertRules(**{k: v for k, v in video.rules.items() if k != "calibration"})
    except (AdplgError, TypeError):
        return []
    if rules.min_duration_s <= 0 or not len(video.scores):
        return []
    edges = np.append(video.times_s, max(video.duration_s, float(video.times_s[-1])))
    return [(float(edges[a]), float(edges[b])) for a, b in dropped_runs(video.scores, video.fps, rules, edges)]


def _dropped_note(spans: list[tuple[float, float]], rules: dict) -> list[str]:
    if not spans:
        return []
    shown = ", ".join(f"{_seconds_text(a)}-{_seconds_text(b)} ({b - a:.1f} s)" for a, b in spans[:5])
    more = f" and {len(spans) - 5} more" if len(spans) > 5 else ""
    return [f"{len(spans)} span(s) reached the on threshold {rules.get('on_threshold', 0):.4g} but raised no alert, "
            f"being shorter than the minimum duration {rules.get('min_duration_s', 0):g} s (dashed boxes on the "
            f"curve): {shown}{more}."]


def _rate_text(video: ScoredVideo, duration: float) -> str:
    """The frame rate said on a video's page: the measured one (frames / duration) beside the container's nominal
    one when they differ by over 1%, and the clock of the times."""
    frames = len(video.scores)
    measured = frames / duration if duration > 0 else video.fps
    rate = (f"{video.fps:g} fps" if abs(measured - video.fps) <= 0.01 * video.fps
            else f"{measured:.3g} fps measured ({video.fps:g} fps nominal)")
    clock = f", times from {video.time_source}" if video.time_source else ""
    return f"{rate}, {frames} frames{clock}"


def _write_video_page(path: Path, template: Template, video: ScoredVideo, source: Path | None, thumbs: list,
                      notes: list[str], intervals: dict | None, max_points: int, neighbours: str) -> dict:
    """Write one video's page at ``path``; returns the data embedded in it (curve, alerts, annotations)."""
    from adplg.inference.timeline import annotated_spans

    t, s = downsample_curve(video.times_s, video.scores, max_points)
    gt = annotated_spans(intervals, video.name, video.fps) if intervals is not None else None
    alerts = [{"start_s": round(g["start_s"], 4), "end_s": round(g["end_s"], 4),
               "peak_score": round(g["peak_score"], 4), "mean_score": round(float(g.get("mean_score", 0)), 4),
               "thumb": thumbs[k]} for k, g in enumerate(video.segments)]
    duration = max(video.duration_s, float(video.times_s.max(initial=0)))
    data = {"video": video.name, "duration_s": round(duration, 4), "fps": video.fps,
            "max_score": round(video.max_score, 4), "on_threshold": video.rules.get("on_threshold"),
            "off_threshold": video.rules.get("off_threshold"), "t": np.round(t, 3).tolist(),
            "s": np.round(s, 4).tolist(), "alerts": alerts,
            "annotations": [[round(a, 3), round(b, 3)] for a, b in gt] if gt is not None else None,
            "features": [str(f) for f in feature_files(video)], "frames": int(len(video.scores)),
            "dropped": [[round(a, 3), round(b, 3)] for a, b in dropped_spans(video)], "time_source": video.time_source}
    notes = [*notes, *_dropped_note(dropped_spans(video), video.rules)]
    if source is not None:
        player = (f'<video id="player" controls preload="metadata" '
                  f'src="{html.escape(relative_url(source, path.parent))}"></video>')
    else:
        player = '<p class="note">No source video: pass --videos DIR to see the footage.</p>'
    facts = (f"{_seconds_text(duration)} long, peak score {video.max_score:.3f}, {len(alerts)} alert(s) covering "
             f"{_seconds_text(video.alert_seconds)}, {_rate_text(video, duration)}")
    atomic_write_text(path, template.substitute(
        title=html.escape(video.name), name=html.escape(video.name), facts=html.escape(facts), nav=neighbours,
        player=player, notes="".join(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        source=html.escape(str(source)) if source is not None else "not found",
        score_file=html.escape(str(video.score_file.resolve())), data=script_json(data)))
    return data


def _write_index(out_dir: Path, report: dict, rows: list[dict], alerts: int, notes: list[str]) -> None:
    """``index.html``, ``index-data.js`` and ``report-meta.js``."""
    atomic_write_text(out_dir / "report-meta.js", f"window.ADPLG_REPORT = {script_json(report)};\n")
    atomic_write_text(out_dir / "index-data.js", f"window.ADPLG_INDEX = {script_json({'videos': rows})};\n")
    sha = report["checkpoint_sha256"] or "not available (file not found)"
    checkpoint = ("<dl>" + "".join(f"<dt>file</dt><dd>{html.escape(c)}</dd>" for c in report["checkpoint"])
                  + f'<dt>sha256</dt><dd class="mono">{html.escape(sha)}</dd></dl>'
                  if report["checkpoint"] else "<p>not recorded (no summary.json)</p>")
    shown = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:20])
    if len(notes) > 20:
        shown += f"<li>and {len(notes) - 20} more</li>"
    atomic_write_text(out_dir / "index.html", Template(asset_text("index.html")).substitute(
        title=html.escape(report["title"]),
        subtitle=html.escape(f"{len(rows)} video(s), {alerts} alert(s), scores from {report['scores_dir']}"),
        checkpoint=checkpoint, rules=_rules_html(report["alert_rules"], report["alert_rules_source"]), notes=shown))


def build_report(scores_dir: Path, out_dir: Path, *, videos_dir: Path | None = None,
                 annotations: Path | dict | None = None, annotation_format: str = "ucf", thumbnails: bool = True,
                 max_points: int = MAX_POINTS, title: str | None = None, overwrite: bool = False) -> ReportSummary:
    """Write the review site of the ``adplg score`` outputs in ``scores_dir`` into ``out_dir`` (see the module
    docstring); returns a :class:`ReportSummary`. ``annotations``: a UCF/XD annotation file (or ``{video: [(start
    frame, end frame), ...]}``) whose anomalies are drawn on the curves; ``thumbnails``: decode the frame at each
    alert's start when the source video is found. ``out_dir`` must be empty, new or an earlier report
    (:func:`~adplg.io.check_output_owner`), unless ``overwrite``.

    The folders, ``summary.json``, the annotations and ``max_points`` are checked before anything is written; a bad
    ``<video>.json`` stops the build with an error naming it, before the index and ``alerts.csv`` are replaced."""
    from adplg.data.gt import read_annotations

    started = time.perf_counter()
    scores_dir, out_dir = Path(scores_dir), Path(out_dir)
    summary, files = read_scores(scores_dir)
    if out_dir.resolve() == scores_dir.resolve():
        raise AdplgError(f"report --out {out_dir}: is the scores folder itself; expected another folder (the report's "
                         f"alerts.csv and pages would mix with the score files)")
    check_output_owner(out_dir, "report", REPORT_OUTPUT_NAMES, what="report --out folder", overwrite=overwrite)
    sources = _index_videos(videos_dir)
    intervals = (read_annotations(annotations, annotation_format) if isinstance(annotations, (str, Path))
                 else annotations)
    if max_points < 4:
        raise AdplgError(f"max_points (--max-points): expected at least 4, got {max_points}")

    checkpoints = [str(c) for c in summary.get("checkpoint") or []]
    sha = _checkpoint_sha256(checkpoints)
    report = {"title": title or f"adplg report: {scores_dir.resolve().name}",
              "scores_dir": str(scores_dir.resolve()), "checkpoint": checkpoints, "checkpoint_sha256": sha,
              "alert_rules": summary.get("alert_rules") or {}, "alert_rules_source": summary.get("alert_rules_source")}
    report["report_id"] = hashlib.sha256(json.dumps([report["scores_dir"], checkpoints, sha]).encode()).hexdigest()[:16]

    mark_output_dir(out_dir, "report")
    taken: set[str] = set()
    safe_names = [_safe_name(f.stem, taken) for f in files]
    template = Template(asset_text("video.html"))
    rows: list[dict[str, Any]] = []  # one per video (the index table)
    alert_rows: list[list[str | int]] = []  # one per alert (alerts.csv)
    notes: list[str] = []
    linked = thumbs_written = 0
    for i, (file, safe) in enumerate(zip(files, safe_names, strict=True)):
        video = load_scored_video(file)
        report["alert_rules"] = report["alert_rules"] or video.rules  # without summary.json: the first video's
        source = sources.get(video.name) or _recorded_source(video)
        thumbs, video_notes = _thumbnails(video, source, out_dir / "thumbs" / safe, thumbnails)
        neighbours = " ".join(f'<a href="{safe_names[j]}.html" rel="{rel}">{label}</a>'
                              for j, rel, label in ((i - 1, "prev", "&larr; previous"), (i + 1, "next", "next &rarr;"))
                              if 0 <= j < len(files))
        page = f"{safe}.html"
        data = _write_video_page(out_dir / "videos" / page, template, video, source, thumbs, video_notes, intervals,
                                 max_points, neighbours)
        linked += source is not None
        thumbs_written += sum(t is not None for t in thumbs)
        notes.extend(f"{video.name}: {n}" for n in video_notes)
        rows.append({"name": video.name, "page": f"videos/{quote(page)}", "duration_s": data["duration_s"],
                     "max_score": data["max_score"], "alerts": len(video.segments),
                     "alert_seconds": round(video.alert_seconds, 3), "has_video": source is not None})
        alert_rows.extend([video.name, k + 1, f"{g['start_s']:.4f}", f"{g['end_s']:.4f}",
                           f"{g['end_s'] - g['start_s']:.4f}", f"{g['peak_score']:.6f}",
                           f"{float(g.get('mean_score', 0)):.6f}",
                           f"thumbs/{Path(thumbs[k]).name}" if thumbs[k] else "", f"videos/{page}"]
                          for k, g in enumerate(video.segments))

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "alert", "start_s", "end_s", "duration_s", "peak_score", "mean_score", "thumbnail",
                     "page"])
    writer.writerows(alert_rows)
    atomic_write_text(out_dir / "alerts.csv", buffer.getvalue())
    for name in ASSETS:
        atomic_write_text(out_dir / "assets" / name, asset_text(name))
    _write_index(out_dir, report, rows, len(alert_rows), notes)
    seconds = time.perf_counter() - started
    log.debug("report of %d video(s), %d alert(s) in %s (%.1f s)", len(rows), len(alert_rows), out_dir, seconds)
    return ReportSummary(out_dir=out_dir, index=out_dir / "index.html", alerts_csv=out_dir / "alerts.csv",
                         videos=len(rows), alerts=len(alert_rows), linked_videos=linked,
                         thumbnails=thumbs_written, notes=notes, seconds=seconds)
