"""The review site of an ``adplg serve`` outputs folder: every alert of every camera with its snapshot and clip,
and the cameras' outages, as ``adplg report`` builds it for ``adplg score`` outputs.

Input (``OUTPUTS``, as the camera service writes it)::

    events.jsonl         one event per line: {"kind": "new" | "update" | "end" | "stream_down" | "stream_up",
                         "camera", "event_id", "start_s", "end_s", "start_wall", "end_wall", "peak_score",
                         "mean_score", "snapshot", "clip", "outage_s"} (read as plain JSON objects)
    snapshots/<camera>/  a JPEG per alert
    clips/<camera>/      <event id>.mp4 per alert and its sidecar <event id>.json (clip_start_s: where the clip
                         starts on the camera's clock)

An alert's events are merged by ``event_id`` (the latest value of each field wins; ``end`` closes it: an alert
without one is *open*, the service stopped or still runs). A ``stream_down`` and the next ``stream_up`` of the same
camera make one outage. A line that is not a JSON object of a known kind (a line torn by a crash) is skipped with a
note. Snapshots and clips are found by file name in the outputs folder's ``snapshots/<camera>/`` / ``clips/<camera>/``
(so a moved or copied outputs folder is reviewed with its own files), else where the event says (absolute, or
relative to where the service ran); the pages link them relative to themselves (nothing is copied), so the report
and the outputs can be moved together.

Output (``out_dir``, each file written atomically)::

    index.html     the alerts (sortable, filtered by camera or text), a player for the clips, the outages
    index-data.js  the data (``window.ADPLG_SERVICE``)
    report-meta.js what the page shares with the verdicts download (report id, outputs folder)
    alerts.csv     one row per alert
    assets/        report.css, report.js

Reviewers mark alerts true or false as on the other pages; the verdicts file names the camera as ``video``, the
alert's stream times and its ``event_id``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import time
from pathlib import Path
from string import Template
from typing import Any

from adplg.errors import AdplgError
from adplg.io import atomic_write_text, check_output_owner, mark_output_dir, output_owner, plain_file_name
from adplg.report.build import ASSETS, ReportSummary, asset_text, relative_url, script_json, unplayable_codec

EVENTS_FILE = "events.jsonl"
ALERT_KINDS = ("new", "update", "end")
STREAM_KINDS = ("stream_down", "stream_up")
ALERT_FIELDS = ("start_s", "end_s", "start_wall", "end_wall", "peak_score", "mean_score", "snapshot", "clip")


def is_service_outputs(folder: str | Path) -> bool:
    """True when ``folder`` is an ``adplg serve`` outputs folder (its marker says ``serve``, or it holds
    ``events.jsonl`` and no ``summary.json`` of ``adplg score``)."""
    folder = Path(folder)
    if output_owner(folder) == "serve":
        return True
    return (folder / EVENTS_FILE).is_file() and not (folder / "summary.json").is_file()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_service_events(folder: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """``(alerts, outages, notes)`` of the outputs folder ``folder`` (see the module docstring): each alert a dict
    of ``event_id``, ``camera``, the fields of :data:`ALERT_FIELDS` and ``open``; each outage ``camera``,
    ``start_s``, ``end_s``, ``outage_s``, ``start_wall``, ``end_wall``, ``open``. An :class:`AdplgError` when
    ``events.jsonl`` is missing or unreadable."""
    path = Path(folder) / EVENTS_FILE
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        what = "not found" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
        raise AdplgError(f"service outputs {folder}: {EVENTS_FILE} {what}; expected the events file `adplg serve` "
                         "writes in its outputs folder") from None
    alerts: dict[str, dict] = {}
    outages: list[dict] = []
    down: dict[str, dict] = {}  # camera -> its open outage
    skipped: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        kind = event.get("kind") if isinstance(event, dict) else None
        camera = event.get("camera") if isinstance(event, dict) else None
        if kind not in ALERT_KINDS + STREAM_KINDS or not isinstance(camera, str) or not camera:
            skipped.append(number)
            continue
        assert isinstance(event, dict)  # for the type checker: kind is set only for a dict
        if kind in ALERT_KINDS:
            event_id = event.get("event_id")
            if not isinstance(event_id, str) or not event_id:
                skipped.append(number)
                continue
            alert = alerts.setdefault(event_id, {"event_id": event_id, "camera": camera, "open": True,
                                                 **dict.fromkeys(ALERT_FIELDS)})
            for key in ALERT_FIELDS:
                if event.get(key) is not None:
                    alert[key] = event[key]
            alert["open"] = alert["open"] and kind != "end"
        elif kind == "stream_down":
            down[camera] = {"camera": camera, "start_s": _number(event.get("start_s")), "end_s": None,
                            "outage_s": None, "start_wall": event.get("start_wall"), "end_wall": None, "open": True}
            outages.append(down[camera])
        else:
            outage = down.pop(camera, None)
            if outage is None:
                outage = {"camera": camera, "start_s": _number(event.get("start_s")), "start_wall": None}
                outages.append(outage)
            outage.update(end_s=_number(event.get("end_s")), outage_s=_number(event.get("outage_s")),
                          end_wall=event.get("end_wall"), open=False)
    notes = []
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        notes.append(f"{EVENTS_FILE}: {len(skipped)} line(s) skipped, not an event the service writes (line "
                     f"{shown}; a line torn by a crash is one)")
    return list(alerts.values()), outages, notes


def _media(value: Any, outputs: Path, sub: str, camera: str) -> Path | None:
    """The file an event names (``snapshot`` / ``clip``): by its name in the outputs folder (the folder under
    review, wherever it was moved), else as written."""
    if not isinstance(value, str) or not value:
        return None
    given = Path(value)
    candidates = [outputs / sub / camera / given.name, outputs / sub / given.name, given, outputs / given]
    return next((c for c in candidates if c.is_file()), None)


def _clip_start(clip: Path) -> float | None:
    """``clip_start_s`` of the clip's sidecar (its first frame on the camera's clock), None without one."""
    try:
        sidecar = json.loads(clip.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _number(sidecar.get("clip_start_s")) if isinstance(sidecar, dict) else None


def _wall(value: Any) -> str:
    return value.replace("T", " ") if isinstance(value, str) else ""


def _rows(alerts: list[dict], outputs: Path, out_dir: Path, notes: list[str]) -> list[dict]:
    """The page's row per alert (media linked relative to ``out_dir``), oldest first; codec notes added."""
    rows, probed = [], set()
    for alert in alerts:
        camera = alert["camera"]
        snapshot = _media(alert["snapshot"], outputs, "snapshots", camera)
        clip = _media(alert["clip"], outputs, "clips", camera)
        start, end = _number(alert["start_s"]), _number(alert["end_s"])
        peak, mean = _number(alert["peak_score"]), _number(alert["mean_score"])
        offset = None
        if clip is not None:
            clip_start = _clip_start(clip)
            offset = round(max(start - clip_start, 0.0), 3) if clip_start is not None and start is not None else None
            if camera not in probed:
                probed.add(camera)
                notes.extend(_codec_note(clip, camera))
        rows.append({
            "event_id": alert["event_id"], "camera": camera, "start_s": start, "end_s": end,
            "duration_s": round(end - start, 3) if start is not None and end is not None else None,
            "start_wall": _wall(alert["start_wall"]), "end_wall": _wall(alert["end_wall"]),
            "peak_score": peak, "mean_score": mean, "open": bool(alert["open"]),
            "snapshot": relative_url(snapshot, out_dir) if snapshot else None,
            "clip": relative_url(clip, out_dir) if clip else None, "clip_offset_s": offset,
            "clip_planned": alert["clip"] is not None})
    rows.sort(key=lambda r: (r["start_wall"] or "", r["camera"], r["start_s"] or 0.0))
    return rows


def _codec_note(clip: Path, camera: str) -> list[str]:
    codec = unplayable_codec(clip)
    if codec is None:
        return []
    return [f"{camera}: the clips are {codec}, which browsers may not play (H.264, VP8, VP9 and AV1 play in "
            f"Chromium); open them with a video player."]


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["camera", "event_id", "start_wall", "end_wall", "start_s", "end_s", "duration_s", "peak_score",
                     "mean_score", "open", "snapshot", "clip"])
    for r in rows:
        writer.writerow([r["camera"], r["event_id"], r["start_wall"], r["end_wall"], r["start_s"], r["end_s"],
                         r["duration_s"], r["peak_score"], r["mean_score"], int(r["open"]), r["snapshot"] or "",
                         r["clip"] or ""])
    atomic_write_text(path, buffer.getvalue())


def build_service_report(outputs_dir: str | Path, out_dir: str | Path, *, title: str | None = None,
                         overwrite: bool = False) -> ReportSummary:
    """Write the review site of the ``adplg serve`` outputs in ``outputs_dir`` into ``out_dir`` (see the module
    docstring); returns a :class:`~adplg.report.build.ReportSummary` (``videos``: the cameras, ``linked_videos``:
    the alerts whose clip was found, ``thumbnails``: those whose snapshot was found). ``out_dir`` must be empty, new
    or an earlier report (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
    from adplg.report.build import REPORT_OUTPUT_NAMES

    started = time.perf_counter()
    outputs, out_dir = Path(outputs_dir), Path(out_dir)
    if not outputs.is_dir():
        what = "is a file" if outputs.exists() else "not found"
        raise AdplgError(f"service outputs {outputs}: {what}; expected the outputs folder `adplg serve` writes")
    if out_dir.resolve() == outputs.resolve():
        raise AdplgError(f"report --out {out_dir}: is the outputs folder itself; expected another folder")
    alerts, outages, notes = read_service_events(outputs)
    check_output_owner(out_dir, "report", REPORT_OUTPUT_NAMES, what="report --out folder", overwrite=overwrite)
    mark_output_dir(out_dir, "report")
    rows = _rows(alerts, outputs, out_dir, notes)
    cameras = sorted({r["camera"] for r in rows} | {o["camera"] for o in outages})
    missing_clips = sum(r["clip_planned"] and r["clip"] is None for r in rows)
    if missing_clips:
        notes.append(f"{missing_clips} alert clip(s) named in the events were not found (still being written, "
                     "removed by retention, or the outputs folder was moved without them).")
    page_title = title or f"adplg serve report: {outputs.resolve().name}"
    report: dict[str, Any] = {"title": page_title, "scores_dir": str(outputs.resolve()), "checkpoint": [],
                              "checkpoint_sha256": None, "alert_rules": {}, "alert_rules_source": None}
    report["report_id"] = hashlib.sha256(json.dumps(["serve", report["scores_dir"]]).encode()).hexdigest()[:16]
    bad_names = sorted({c for c in cameras if not plain_file_name(c)})
    if bad_names:
        notes.append(f"camera name(s) {bad_names[:3]} cannot be a verdict's video name; their alerts cannot be marked")
    data = {"alerts": rows, "cameras": cameras, "outages": [{**o, "start_wall": _wall(o["start_wall"]),
                                                             "end_wall": _wall(o["end_wall"])} for o in outages]}
    atomic_write_text(out_dir / "report-meta.js", f"window.ADPLG_REPORT = {script_json(report)};\n")
    atomic_write_text(out_dir / "index-data.js", f"window.ADPLG_SERVICE = {script_json(data)};\n")
    _write_csv(out_dir / "alerts.csv", rows)
    for name in ASSETS:
        atomic_write_text(out_dir / "assets" / name, asset_text(name))
    walls = sorted(w for r in rows for w in (r["start_wall"], r["end_wall"]) if w)
    period = f", {walls[0]} to {walls[-1]}" if walls else ""
    facts = [("outputs", str(outputs.resolve())), ("cameras", ", ".join(cameras) or "none"),
             ("alerts", f"{len(rows)} ({sum(r['open'] for r in rows)} open){period}"),
             ("clips", f"{sum(r['clip'] is not None for r in rows)} found"),
             ("outages", str(len(outages)))]
    shown = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:20])
    atomic_write_text(out_dir / "index.html", Template(asset_text("service.html")).substitute(
        title=html.escape(page_title),
        subtitle=html.escape(f"{len(cameras)} camera(s), {len(rows)} alert(s), {len(outages)} outage(s), events "
                             f"from {outputs.resolve() / EVENTS_FILE}"),
        facts="<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts) + "</dl>",
        notes=shown))
    seconds = time.perf_counter() - started
    return ReportSummary(out_dir=out_dir, index=out_dir / "index.html", alerts_csv=out_dir / "alerts.csv",
                         videos=len(cameras), alerts=len(rows), linked_videos=sum(r["clip"] is not None for r in rows),
                         thumbnails=sum(r["snapshot"] is not None for r in rows), notes=notes, seconds=seconds)
