"""Alert clips of the camera service: an MP4 per alert, remuxed from the stream's compressed packets (no re-encode),
from a key frame ``pre_s`` seconds before the alert's start to ``post_s`` seconds after its end, with a JSON sidecar;
and the retention of a clips folder (:func:`prune_clips`).

    recorder = ClipRecorder(Path("clips"), "door", pre_s=5, post_s=5)
    source = AVSource(url, packet_tap=recorder.packet)       # every video packet, in the frames' clock
    path = recorder.begin(event_id, start_s, {"peak_score": 0.9})   # the alert is raised (start_s in the past)
    recorder.finish(event_id, end_s, {"mean_score": 0.7})           # the alert ended; the clip closes at end_s + post_s
    recorder.close()                                                # stopping: every open clip is closed now

Packets: :meth:`ClipRecorder.packet` copies each packet's bytes into a ring with its time (the reader's clock: the
one the frames, the alerts and so ``start_s`` / ``end_s`` use). The ring keeps the newest key frame at or before
``pre_s + latency_s`` seconds back, and everything after it: what a clip starting ``pre_s`` before an alert raised up
to ``latency_s`` after its start needs, plus at most a GOP (``max_gop_s`` caps a stream that sends key frames
rarely). Packets an open clip has not written yet are kept too.

Cut: a clip starts at the newest key frame at or before ``start_s - pre_s`` (the oldest kept key frame when the ring
does not reach that far back, said in the sidecar as ``clip_start_s``) and ends with the last packet at or before
``end_s + post_s``. Packets are written ``latency_s`` behind the newest one, so an end announced up to ``latency_s``
late still cuts the clip at ``end_s + post_s``. Timestamps are rebased on the reader's clock: the first key frame is
at 0 and a gap in the stream (an outage) stays a gap; a stream whose codec parameters change (a camera restarted
with another resolution) closes the clips open on the old ones.

Crash safety: a clip is written to a hidden ``.<name>.mp4.part`` file and renamed to ``<event id>.mp4`` once its
trailer is written; the sidecar ``<event id>.json`` (event id, camera, times, the ``info`` of begin and finish:
scores, rules, checkpoint) is written atomically just before. A failure removes the part file; nothing ever raises
into the caller (failures are logged and counted in ``errors``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adplg.errors import AdplgError
from adplg.io import atomic_write_text

if TYPE_CHECKING:
    import av

__all__ = ["ClipRecorder", "prune_clips"]

log = logging.getLogger(__name__)

PART_SUFFIX = ".mp4.part"


def clip_name(event_id: str) -> str:
    """A file-name-safe stem for ``event_id`` (characters other than letters, digits, ``.``, ``_``, ``-`` -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(event_id)).strip(".") or "clip"


class _Template:
    """The codec parameters of one input stream, kept beyond the input's life: an output stream of an unopened
    in-memory MP4 (what :meth:`av.container.OutputContainer.add_stream_from_template` copies from)."""

    def __init__(self, stream: Any):
        import av

        self.holder = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = self.holder.add_stream_from_template(stream)
        context = stream.codec_context
        self.time_base: Fraction = stream.time_base or Fraction(1, 90000)
        self.signature = (context.name, context.width, context.height, bytes(context.extradata or b""),
                          self.time_base)


@dataclass(kw_only=True)
class _Entry:
    """One packet in the ring: its bytes, time in the reader's clock, key flag, ``pts - dts`` and duration in its
    template's time base (None when unknown)."""

    seq: int
    data: bytes
    time_s: float
    key: bool
    lag: int | None
    duration: int | None
    template: _Template


@dataclass(kw_only=True)
class _Clip:
    """An open clip: its output container and stream, the seq of the last packet written, its time origin."""

    event_id: str
    path: Path
    part: Path
    start_s: float
    info: dict[str, Any]
    container: Any = None
    stream: Any = None
    template: _Template | None = None
    cursor: int = -1  # seq of the last entry written (or skipped)
    t0: float = 0.0  # the time of the first key frame written: pts 0
    end_s: float | None = None
    stop_s: float | None = None  # end_s + post_s once finished
    last_dts: int | None = None
    last_s: float | None = None  # the end of the last packet written
    packets: int = 0
    notes: list[str] = field(default_factory=list)


class ClipRecorder:
    """The clips of one camera in ``folder`` (see the module docstring). ``pre_s`` / ``post_s``: seconds before an
    alert's start and after its end; ``latency_s``: how long after its start an alert may be raised, and after its
    end ended (the online scorer's look-ahead plus the minimum duration), still cut exactly; ``max_gop_s``: the
    longest key-frame interval kept whole. Thread-safe: :meth:`packet` runs in the reader thread, the others in the
    scoring loop. Counters: ``clips`` (written), ``errors``."""

    def __init__(self, folder: Path, camera: str, *, pre_s: float = 5.0, post_s: float = 5.0,
                 latency_s: float = 10.0, max_gop_s: float = 30.0):
        for name, value in (("pre_s", pre_s), ("post_s", post_s), ("latency_s", latency_s)):
            if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
                raise AdplgError(f"expected seconds >= 0, got {value!r}", parameter=f"clips.{name}")
        if not (isinstance(max_gop_s, (int, float)) and max_gop_s > 0):
            raise AdplgError(f"expected seconds > 0, got {max_gop_s!r}", parameter="clips.max_gop_s")
        self.folder, self.camera = Path(folder), str(camera)
        self.pre_s, self.post_s, self.latency_s, self.max_gop_s = (float(pre_s), float(post_s), float(latency_s),
                                                                   float(max_gop_s))
        self.clips = self.errors = 0
        self._ring: deque[_Entry] = deque()
        self._open: dict[str, _Clip] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._newest = float("-inf")
        self._template: _Template | None = None
        self._input_stream: Any = None  # the input stream the template was made from (compared by identity)

    def __repr__(self) -> str:
        return f"ClipRecorder({str(self.folder)!r}, {self.camera!r}, open={len(self._open)}, clips={self.clips})"

    # ------------------------------------------------------------------------------------------------ the packets
    def packet(self, packet: av.Packet, time_s: float) -> None:
        """Keep one compressed video packet (``time_s``: its presentation time in the frames' clock) and write the
        open clips up to ``latency_s`` behind the newest packet. Never raises (failures are logged and counted)."""
        try:
            with self._lock:
                template = self._template_for(packet.stream)
                lag = (packet.pts - packet.dts if packet.pts is not None and packet.dts is not None else None)
                self._ring.append(_Entry(seq=self._seq, data=bytes(packet), time_s=float(time_s),
                                         key=bool(packet.is_keyframe), lag=lag, duration=packet.duration or None,
                                         template=template))
                self._seq += 1
                self._newest = max(self._newest, float(time_s))
                for clip in list(self._open.values()):
                    self._advance(clip, self._newest - self.latency_s)
                self._prune()
        except Exception as exc:  # noqa: BLE001 - a clip's failure must never stop the camera
            self._failed("keeping a packet", exc)

    def _template_for(self, stream) -> _Template:
        """The template of ``stream``: the current one while the stream (or its parameters) stays the same."""
        if stream is self._input_stream and self._template is not None:
            return self._template
        template = _Template(stream)
        self._input_stream = stream
        if self._template is None or template.signature != self._template.signature:
            self._template = template
        return self._template

    def _prune(self) -> None:
        """Drop the packets no clip can need (see the module docstring)."""
        keep_from = self._newest - self.pre_s - self.latency_s
        ring = self._ring
        drop = 0  # keep from the newest key frame at or before keep_from
        for k, entry in enumerate(ring):
            if entry.time_s > keep_from:
                break
            if entry.key:
                drop = k
        too_old = keep_from - self.max_gop_s  # a GOP longer than max_gop_s is not kept whole
        while drop < len(ring) and (ring[drop].time_s < too_old or not ring[drop].key and
                                    ring[drop].time_s <= keep_from):
            drop += 1  # and a packet before the first key frame kept is of no use
        pinned = min((clip.cursor for clip in self._open.values()), default=None)
        if pinned is not None and ring:  # an open clip's unwritten packets stay
            drop = min(drop, max(0, pinned + 1 - ring[0].seq))
        for _ in range(drop):
            ring.popleft()

    # ------------------------------------------------------------------------------------------------ the clips
    def begin(self, event_id: str, start_s: float, info: dict) -> Path:
        """Open the clip of alert ``event_id`` starting at ``start_s`` (the reader's clock); returns its planned path
        ``<folder>/<event id>.mp4`` at once (the file exists once the clip is closed). ``info`` goes into the
        sidecar. Never raises."""
        name = clip_name(event_id)
        path = self.folder / f"{name}.mp4"
        with self._lock:
            if event_id in self._open:
                return self._open[event_id].path
            clip = _Clip(event_id=event_id, path=path, part=self.folder / f".{name}{PART_SUFFIX}",
                         start_s=float(start_s), info=dict(info))
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._open[event_id] = clip
                self._place(clip)
                self._advance(clip, self._newest - self.latency_s)
            except Exception as exc:  # noqa: BLE001 - a clip's failure must never stop the camera
                self._discard(clip, "opening", exc)
        return path

    def _place(self, clip: _Clip) -> None:
        """Set the clip's cursor just before its first packet: the newest key frame at or before ``start_s -
        pre_s``, else the oldest key frame kept (a note says so), else the next one to arrive."""
        wanted = clip.start_s - self.pre_s
        keys = [entry for entry in self._ring if entry.key]
        before = [entry for entry in keys if entry.time_s <= wanted]
        first = before[-1] if before else (keys[0] if keys else None)
        if first is None:
            clip.cursor = self._seq - 1  # no key frame kept: start at the next one
            clip.notes.append("no key frame was kept before the alert was raised: the clip starts at the next one")
        else:
            clip.cursor = first.seq - 1
            if not before:
                clip.notes.append(f"the packets kept reach back to {first.time_s:.3f} s only, not to "
                                  f"{wanted:.3f} s (start_s - pre_s)")

    def finish(self, event_id: str, end_s: float, info: dict) -> None:
        """Alert ``event_id`` ended at ``end_s``: its clip closes with the last packet at or before ``end_s +
        post_s`` (now when that packet is already here). ``info`` is added to the sidecar. Never raises."""
        with self._lock:
            clip = self._open.get(event_id)
            if clip is None:
                log.debug("%s: finish of %s, which has no open clip", self.camera, event_id)
                return
            clip.end_s, clip.stop_s = float(end_s), float(end_s) + self.post_s
            clip.info.update(info)
            try:
                self._advance(clip, self._newest - self.latency_s)
            except Exception as exc:  # noqa: BLE001
                self._discard(clip, "writing", exc)

    def close(self) -> None:
        """Close every open clip now, with the packets it has (the service is stopping). Never raises."""
        with self._lock:
            for clip in list(self._open.values()):
                try:
                    self._advance(clip, float("inf"))
                    if clip.event_id in self._open:
                        self._finalize(clip, "closed before the alert ended (the service stopped, or the camera was "
                                             "removed)" if clip.stop_s is None else
                                       "closed at the last packet received, before end_s + post_s")
                except Exception as exc:  # noqa: BLE001
                    self._discard(clip, "closing", exc)
            self._ring.clear()

    def _advance(self, clip: _Clip, until_s: float) -> None:
        """Write the clip's packets after its cursor, in arrival order, up to the first one later than ``until_s``
        (or than the clip's end: then the clip is finalized)."""
        for entry in list(self._ring):
            if entry.seq <= clip.cursor:
                continue
            if clip.stop_s is not None and entry.time_s > clip.stop_s:
                self._finalize(clip, "")
                return
            if entry.time_s > until_s:
                return
            clip.cursor = entry.seq
            if clip.container is None:
                if not entry.key:
                    continue  # a clip starts at a key frame
                self._open_file(clip, entry)
            elif entry.template is not clip.template:
                self._finalize(clip, "cut short: the stream's codec parameters changed")
                return
            self._write(clip, entry)

    def _open_file(self, clip: _Clip, entry: _Entry) -> None:
        import av

        clip.part.unlink(missing_ok=True)
        clip.container = av.open(str(clip.part), "w", format="mp4")
        clip.stream = clip.container.add_stream_from_template(entry.template.stream)
        clip.template, clip.t0 = entry.template, entry.time_s

    def _write(self, clip: _Clip, entry: _Entry) -> None:
        """Mux ``entry`` into the clip: pts from its time (rebased on the clip's start), dts keeping its pts - dts,
        strictly increasing."""
        import av

        assert clip.template is not None  # set with the container
        base = clip.template.time_base
        if entry.time_s < clip.t0 and not entry.key:
            return  # a leading picture of an open GOP: it refers to the GOP before the clip
        pts = round((entry.time_s - clip.t0) / base)
        dts = pts - entry.lag if entry.lag is not None else pts
        if clip.last_dts is not None and dts <= clip.last_dts:
            dts = clip.last_dts + 1
        if dts > pts:
            pts = dts
        packet = av.Packet(entry.data)
        packet.time_base, packet.pts, packet.dts = base, pts, dts
        if entry.duration:
            packet.duration = entry.duration
        packet.is_keyframe = entry.key
        packet.stream = clip.stream
        clip.container.mux(packet)
        clip.last_dts, clip.packets = dts, clip.packets + 1
        end = entry.time_s + float((entry.duration or 0) * base)
        clip.last_s = end if clip.last_s is None else max(clip.last_s, end)

    def _finalize(self, clip: _Clip, note: str) -> None:
        """Write the trailer, the sidecar and rename the part file to the clip; a clip without packets leaves no
        file (a warning says why)."""
        del self._open[clip.event_id]
        if note:
            clip.notes.append(note)
        if clip.container is None:
            log.warning("%s: no clip for %s: no key frame arrived (%s)", self.camera, clip.event_id,
                        "; ".join(clip.notes) or "the stream ended")
            return
        try:
            clip.container.close()
            sidecar = {"event_id": clip.event_id, "camera": self.camera, "clip": clip.path.name,
                       "start_s": clip.start_s, "end_s": clip.end_s, "pre_s": self.pre_s, "post_s": self.post_s,
                       "clip_start_s": round(clip.t0, 6),
                       "clip_end_s": round(clip.last_s, 6) if clip.last_s is not None else None,
                       "packets": clip.packets, "notes": clip.notes,
                       "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "info": clip.info}
            atomic_write_text(clip.path.with_suffix(".json"), json.dumps(sidecar, indent=1, default=str) + "\n")
            os.replace(clip.part, clip.path)
            self.clips += 1
            log.info("%s: clip %s (%.1f s from %.2f s)", self.camera, clip.path, (clip.last_s or clip.t0) - clip.t0,
                     clip.t0)
        except Exception as exc:  # noqa: BLE001
            self._open[clip.event_id] = clip  # _discard removes it again
            self._discard(clip, "closing", exc)

    def _discard(self, clip: _Clip, doing: str, exc: BaseException) -> None:
        """Give up ``clip`` after a failure: close and remove its part file, log and count."""
        self._open.pop(clip.event_id, None)
        if clip.container is not None:
            try:
                clip.container.close()
            except Exception:  # noqa: BLE001, S110 - already failing: the part file goes anyway
                pass
        clip.part.unlink(missing_ok=True)
        self._failed(f"{doing} the clip of {clip.event_id}", exc)

    def _failed(self, doing: str, exc: BaseException) -> None:
        self.errors += 1
        log.warning("%s: clips: %s failed (%s: %s)", self.camera, doing, type(exc).__name__, exc)


def prune_clips(folder: Path, max_age_s: float | None, max_total_bytes: int | None) -> list[Path]:
    """Retention of a clips folder (searched recursively): remove the clips (``*.mp4`` with their ``.json``
    sidecars) older than ``max_age_s`` seconds (by modification time), then the oldest ones until the clips take at
    most ``max_total_bytes``; ``None`` leaves that limit out. Part files of clips being written are left alone
    unless older than ``max_age_s`` (a killed service's). Returns the removed clips' paths (oldest first)."""
    for name, value in (("max_age_s", max_age_s), ("max_total_bytes", max_total_bytes)):
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise AdplgError(f"expected a number >= 0 or None, got {value!r}", parameter=f"clips.{name}")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    clips = []
    for path in folder.rglob("*.mp4"):
        try:
            stat = path.stat()
        except OSError:
            continue
        sidecar = path.with_suffix(".json")
        size = stat.st_size + (sidecar.stat().st_size if sidecar.is_file() else 0)
        clips.append((stat.st_mtime, path, size))
    clips.sort()
    removed: list[Path] = []
    total = sum(size for _, _, size in clips)
    for mtime, path, size in clips:
        too_old = max_age_s is not None and now - mtime > max_age_s
        too_big = max_total_bytes is not None and total > max_total_bytes
        if not (too_old or too_big):
            continue
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        total -= size
        removed.append(path)
    if max_age_s is not None:
        for part in folder.rglob(f".*{PART_SUFFIX}"):
            try:
                if now - part.stat().st_mtime > max_age_s:
                    part.unlink(missing_ok=True)
            except OSError:
                continue
    if removed:
        log.info("clips: removed %d clip(s) from %s (retention)", len(removed), folder)
    return removed
