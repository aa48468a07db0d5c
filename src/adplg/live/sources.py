"""Live frame sources for ``adplg watch``: cameras, network streams and files, read by one thread per source into a
bounded queue, with reconnection.

Sources (:func:`open_source`)
    ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://`` URLs: a network stream
    (live: reconnected when it drops); ``/dev/videoN``: a local camera through PyAV's ``v4l2`` format (live); any
    other path: a video file, which ends the stream when it ends (never reconnected). A file plays as fast as the
    scorer takes it (no frame is dropped: the reader waits for room in the queue), or with ``realtime`` at its own
    frame rate (paced by its presentation times), like a camera.

Frames: RGB uint8 ``[H, W, 3]`` with their presentation time in seconds from the first frame
(``(pts - start) * time_base``; ``index / fps`` for a frame without a timestamp, ``Frame.timed`` False).

Outages: when a live connection that delivered frames ends or fails, the reader queues a :class:`StreamDown` marker
(never dropped) and, when frames come again, a :class:`StreamUp` marker before the first of them, with the outage's
length (wall clock, from the last frame received to the next) and the connect attempts it took; it logs "reconnected
after N s (K attempts)". The new connection's clock is anchored on the wall clock: its first frame is at the last
frame's time plus the outage's length (at least one frame period later), so the outage stays a gap on the timeline
and times never go backwards, whatever the restarted stream's own timestamps say (a restarted server starts at 0).

Bounded queue: the reader thread puts frames into a ``queue.Queue`` of ``queue_frames`` frames. For a live source
(and a file played in real time) a full queue **drops the oldest queued frame** to make room for the newest: the
scorer stays close to live instead of falling ever further behind, and memory is bounded. Every dropped frame is
counted (``FrameReader.dropped``, reported by ``adplg watch``). A dropped frame shortens the snippet clock: the
frames of a snippet are the next 16 that arrived.

Reconnection: a live source that fails to open, fails while decoding, ends, or stalls (no frame for
``stall_timeout`` seconds: PyAV's read timeout for network streams, and a watchdog thread for every live source) is
reopened after a backoff of ``backoff_s * 2**(n-1)`` seconds (at most ``backoff_max_s``), ``n`` the failed connects
in a row. After ``max_retries`` failed reconnects in a row (``max_retries + 1`` attempts) the reader stops with an
:class:`~adplg.errors.AdplgError` naming the source. A connection that delivered frames resets the count.
Counters: ``reconnect_attempts`` (every connect tried after a connection ended or failed) and ``reconnections``
(connections that delivered frames again after an outage) differ; ``outages`` lists each outage.

Packet tap (``AVSource(packet_tap=fn)``, off by default): ``fn(packet, time_s)`` is called in the reader thread for
every compressed packet of the video stream, before its frames are decoded (the camera service keeps them to cut
alert clips without re-encoding). ``time_s`` is the packet's presentation time in the reader's clock, the one its
frames get: the connection's own time minus its first frame's (live sources), plus the offset the
:class:`FrameReader` gives the connection (:attr:`FrameSource.clock_offset`: 0 at first, anchored on the wall clock
after an outage). That offset is known once the connection's first frame is handed over, so the packets read before
it wait and are tapped just after it. A packet without a timestamp gets its decode order / fps, like an untimed frame.

Tests need no RTSP server: :class:`FrameSource` is the abstraction (``frames()`` yields :class:`Frame` objects and
may raise to simulate a dropped connection), and the tests use a file source that raises part-way on its first
connection and then reopens (``tests/test_watch.py``).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adplg.errors import AdplgError
from adplg.inference.timeline import ASSUMED_FPS

if TYPE_CHECKING:
    import av

__all__ = ["END", "AVSource", "Frame", "FrameReader", "FrameSource", "StreamDown", "StreamUp", "is_url", "open_source"]

log = logging.getLogger(__name__)

_URL = re.compile(r"^(rtsps?|rtmps?|https?|udp|tcp|srt|rtp|mms)://", re.IGNORECASE)


def is_url(spec: str) -> bool:
    """True when ``spec`` is a network URL (rtsp://, http(s)://, ...) rather than a file or a device."""
    return bool(_URL.match(str(spec)))


@dataclass(kw_only=True)
class Frame:
    """One decoded frame: ``image`` RGB uint8 ``[H, W, 3]``, ``time_s`` its presentation time (seconds from the
    stream's start), ``timed`` False when the stream gave it no timestamp (``time_s`` is then frame index / fps),
    ``arrival`` the ``time.monotonic()`` when the reader received it."""

    image: np.ndarray
    time_s: float
    timed: bool = True
    arrival: float = field(default_factory=time.monotonic)


class FrameSource:
    """Where frames come from. ``frames()`` connects (raising on failure) and yields :class:`Frame` objects (their
    ``time_s`` in this connection's own clock) until the stream ends; ``fps`` is the declared frame rate once
    connected (0 when unknown); ``live`` sources are reconnected when they end or fail, others end the stream.
    ``clock_offset``: the seconds the reader adds to the current connection's times (set by :class:`FrameReader`
    when the connection's first frame arrives, before it asks for the next one)."""

    name: str = "source"
    live: bool = False
    fps: float = 0.0
    clock_offset: float = 0.0

    def frames(self) -> Iterator[Frame]:
        """Connect (raising on failure) and yield the frames until the stream ends."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Ask a blocked ``frames()`` to give up (called by the stall watchdog); optional."""


class AVSource(FrameSource):
    """A PyAV/FFmpeg source: a network URL, a ``/dev/video*`` camera (``v4l2``) or a video file. ``packet_tap``:
    called with every compressed video packet and its time in the reader's clock (see the module docstring)."""

    def __init__(self, spec: str, stall_timeout: float = 10.0, options: dict | None = None,
                 packet_tap: Callable[[av.Packet, float], None] | None = None):
        self.spec = str(spec)
        self.packet_tap = packet_tap
        self.tap_errors = 0
        self.name = self.spec
        self.stall_timeout = float(stall_timeout)
        self.device = self.spec.startswith("/dev/video")
        self.url = is_url(self.spec)
        self.live = self.url or self.device
        self.options = dict(options or {})
        if self.spec.lower().startswith("rtsp") and "rtsp_transport" not in self.options:
            self.options["rtsp_transport"] = "tcp"  # UDP loses packets (grey smears) on busy networks
        self._interrupted = False
        if not self.live:
            path = Path(self.spec)
            if not path.is_file():
                what = "is a folder" if path.exists() else "not found"
                raise AdplgError(f"source {self.spec}: {what} (expected a video file, an rtsp/http(s) URL or a "
                                 "camera device such as /dev/video0)")

    def interrupt(self) -> None:
        """Make a blocked ``frames()`` give up at its next check (called by the stall watchdog)."""
        self._interrupted = True

    def frames(self) -> Iterator[Frame]:
        """Open the source with PyAV and yield its decoded frames (RGB) with their presentation times."""
        import av

        from adplg.features.video import frame_time_s

        self._interrupted = False
        kwargs: dict = {"options": self.options} if self.options else {}
        if self.live:
            kwargs["timeout"] = (self.stall_timeout, self.stall_timeout)  # open and read timeouts (seconds)
        if self.device:
            kwargs["format"] = "v4l2"
        try:
            container = av.open(self.spec, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure to connect is the source's
            raise ConnectionError(f"cannot open {self.spec}: {type(exc).__name__}: {exc}") from None
        try:
            if not container.streams.video:
                raise AdplgError(f"source {self.spec}: no video stream (expected at least 1, got 0)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(rate) if rate else 0.0
            time_base, start = stream.time_base, stream.start_time
            step = 1.0 / (self.fps if self.fps > 0 else ASSUMED_FPS)
            first: float | None = None
            handed = False  # a frame was handed over: the reader has set this connection's clock_offset
            waiting: list[tuple[av.Packet, float]] = []  # packets read before that
            index = 0
            for number, packet in enumerate(container.demux(stream)):  # what container.decode(stream) does
                if self._interrupted:
                    return
                if self.packet_tap is not None and packet.size:  # size 0: the end-of-stream flush
                    waiting.append((packet, _packet_time_s(packet, time_base, start, number * step)))
                    if handed:
                        self._tap(waiting, first)
                for frame in packet.decode():
                    if self._interrupted:
                        return
                    pts = frame_time_s(frame, time_base, start)
                    t = pts if pts is not None else index * step
                    index += 1
                    if first is None and self.live:
                        first = t  # a live stream's clock starts anywhere: count from this connection's first frame
                    yield Frame(image=frame.to_ndarray(format="rgb24"), time_s=t - (first or 0.0),
                                timed=pts is not None)
                    handed = True
                    if waiting:
                        self._tap(waiting, first)
        finally:
            container.close()

    def _tap(self, waiting: list, first: float | None) -> None:
        """Hand the ``(packet, own time)`` pairs of ``waiting`` to the packet tap in the reader's clock; empties it.
        A tap that raises costs that packet only (counted in ``tap_errors``, the first one logged), never the
        stream."""
        assert self.packet_tap is not None  # only called with a tap
        for packet, t in waiting:
            try:
                self.packet_tap(packet, t - (first or 0.0) + self.clock_offset)
            except Exception as exc:  # noqa: BLE001 - the tap's failure must not look like the stream's
                self.tap_errors += 1
                if self.tap_errors == 1:
                    log.warning("%s: the packet tap failed (%s: %s); further failures are counted only", self.name,
                                type(exc).__name__, exc)
        waiting.clear()


@dataclass(frozen=True, kw_only=True)
class StreamDown:
    """Reader queue marker: the live connection ended or failed after delivering frames. ``at_s``: the end of the
    last frame received (the reader's clock), ``reason``: why, ``wall``: the ``time.monotonic()`` of the last frame."""

    at_s: float
    reason: str
    wall: float


@dataclass(frozen=True, kw_only=True)
class StreamUp:
    """Reader queue marker, just before the first frame after an outage: ``at_s`` that frame's time (the reader's
    clock), ``down_s`` the outage's length in wall-clock seconds (last frame received -> this one), ``attempts`` the
    connects it took."""

    at_s: float
    down_s: float
    attempts: int


def open_source(spec: str, stall_timeout: float = 10.0) -> AVSource:
    """The :class:`AVSource` for ``spec`` (URL, ``/dev/videoN`` or file); a missing file is an ``AdplgError``."""
    return AVSource(spec, stall_timeout=stall_timeout)


def _packet_time_s(packet, time_base, start: int | None, fallback: float) -> float:
    """A demuxed packet's presentation time in seconds from the stream's start (as :func:`frame_time_s` times
    frames): its pts, else its dts, else ``fallback`` (decode order / fps)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None or not time_base:
        return fallback
    return float((stamp - (start or 0)) * time_base)


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()  # the reader's last queue item: the stream ended (or failed: see FrameReader.error)


class FrameReader:
    """One thread reading ``source`` into a bounded queue (see the module docstring for the drop policy and the
    reconnection rules). ``get(timeout)`` returns a :class:`Frame`, a :class:`StreamDown` / :class:`StreamUp`
    marker, :data:`END` once the stream is over (then ``error`` holds the :class:`AdplgError` if it failed), or None
    on timeout. Counters: ``frames``, ``dropped``, ``reconnect_attempts``, ``reconnections``, ``stalls``,
    ``backoffs`` (the last 100 waits, seconds); ``outages``: one dict per outage (``start_s``, ``end_s``, ``down_s``,
    ``attempts``, ``reason``; ``end_s`` None while it lasts)."""

    def __init__(self, source: FrameSource, queue_frames: int = 256, realtime: bool = False, max_retries: int = 5,
                 stall_timeout: float = 10.0, backoff_s: float = 0.5, backoff_max_s: float = 30.0):
        if queue_frames < 1:
            raise AdplgError(f"expected >= 1 frame, got {queue_frames}", parameter="queue_frames")
        if max_retries < 0:
            raise AdplgError(f"expected >= 0, got {max_retries}", parameter="max_retries")
        if not stall_timeout > 0:
            raise AdplgError(f"expected seconds > 0, got {stall_timeout}", parameter="stall_timeout")
        self.source = source
        self.realtime = bool(realtime)
        self.drop_when_full = bool(source.live or realtime)
        self.max_retries = int(max_retries)
        self.stall_timeout = float(stall_timeout)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.queue: queue.Queue = queue.Queue(maxsize=int(queue_frames))
        self.frames = 0
        self.dropped = 0
        self.reconnect_attempts = 0
        self.reconnections = 0
        self.stalls = 0
        self.outages: list[dict] = []
        self.backoffs: deque[float] = deque(maxlen=100)
        self.error: AdplgError | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._stalled = threading.Event()
        self._last_frame = time.monotonic()
        self._receiving = False
        self._got = False
        self._offset, self._step = 0.0, 1.0 / 30.0
        self._last_wall, self._last_time = 0.0, 0.0  # time.monotonic() and time of the last frame received
        self._down: StreamDown | None = None  # the outage in progress
        self._down_attempts = 0  # connects tried during it
        self._thread = threading.Thread(target=self._run, name=f"adplg-reader {source.name}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="adplg-watchdog", daemon=True)

    # ---- consumer side
    def start(self) -> FrameReader:
        """Start the reader thread (and, for a live source, the stall watchdog); returns the reader."""
        self._thread.start()
        if self.source.live:
            self._watchdog.start()
        return self

    def get(self, timeout: float = 0.2):
        """The next queued item: a :class:`Frame`, :data:`END` once the stream is over, or None on timeout."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self, join_s: float = 2.0) -> None:
        """Stop reading: interrupt the source, empty the queue and wait up to ``join_s`` for the thread."""
        self._stop.set()
        self.source.interrupt()
        with _suppress_empty():
            while True:  # make room so a reader blocked on a full queue sees the stop
                self.queue.get_nowait()
        if self._thread.is_alive():
            self._thread.join(join_s)

    # ---- reader thread
    def _put(self, item) -> None:
        if item is END or not self.drop_when_full:
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        if not isinstance(item, Frame):  # a marker is never dropped, and never waits
            self._put_over_oldest_frame(item)
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self._put_over_oldest_frame(item)

    def _put_over_oldest_frame(self, item) -> None:
        """Queue ``item``, dropping the oldest queued frame when the queue is full (markers stay)."""
        with self.queue.mutex:
            items = self.queue.queue
            if len(items) >= self.queue.maxsize:
                for k, queued in enumerate(items):
                    if isinstance(queued, Frame):
                        del items[k]
                        self.dropped += 1
                        break
            items.append(item)
            self.queue.unfinished_tasks += 1
            self.queue.not_empty.notify()

    def _watch(self) -> None:
        """Stall watchdog of a live source: no frame for ``stall_timeout`` seconds while connected -> reconnect."""
        step = min(0.5, self.stall_timeout / 4)
        while not self._stop.wait(step):
            if self._receiving and time.monotonic() - self._last_frame > self.stall_timeout:
                if not self._stalled.is_set():
                    log.warning("%s: no frame for %.1f s; reconnecting", self.source.name, self.stall_timeout)
                    self.stalls += 1
                    self._stalled.set()
                    self.source.interrupt()

    def _connection(self) -> bool:
        """Read one connection into the queue; returns whether it delivered frames. The clock offset (where this
        connection's times start in the reader's continuous clock) advances as frames arrive, even when the
        connection fails part-way; after an outage it is anchored on the wall clock (see the module docstring)."""
        got = False
        first_wall = first_t = last_t = None
        base = self._offset
        self._stalled.clear()
        self._last_frame = time.monotonic()
        self._receiving = True
        self._got = False
        try:
            for frame in self.source.frames():
                if self._stop.is_set() or self._stalled.is_set():
                    break
                now = time.monotonic()
                if not got:
                    got = self._got = True
                    self.connected.set()
                    if self.source.fps > 0:
                        self._step = 1.0 / self.source.fps
                    if self._down is not None:
                        base = self._back_up(frame, now)
                    self.source.clock_offset = base  # the packet tap's offset too (see AVSource)
                if self.realtime:
                    if first_wall is None or first_t is None:  # set together
                        first_wall, first_t = now, frame.time_s
                    wait = first_wall + (frame.time_s - first_t) - now
                    if wait > 0 and self._stop.wait(wait):
                        break
                if last_t is not None and frame.time_s - last_t > 0:
                    self._step = frame.time_s - last_t
                last_t = frame.time_s
                frame.time_s += base
                self._offset = frame.time_s + self._step  # the end of this frame: where an outage starts
                self._last_time = frame.time_s
                frame.arrival = self._last_frame = self._last_wall = time.monotonic()
                self.frames += 1
                self._put(frame)
        finally:
            self._receiving = False
        return got

    def _back_up(self, frame: Frame, now: float) -> float:
        """The first frame after an outage arrived at ``now``: queue :class:`StreamUp`, log it, close the outage's
        record; returns the clock offset of the new connection (wall-clock anchored)."""
        down, self._down = self._down, None
        assert down is not None  # called only while an outage is open
        down_s = now - down.wall
        at_s = max(down.at_s, self._last_time + down_s)  # the last frame's time + the outage's length
        self.reconnections += 1
        self.outages[-1].update(end_s=at_s, down_s=down_s, attempts=self._down_attempts)
        log.warning("%s: reconnected after %.1f s (%d attempt(s))", self.source.name, down_s, self._down_attempts)
        self._put(StreamUp(at_s=at_s, down_s=down_s, attempts=self._down_attempts))
        return at_s - frame.time_s

    def _went_down(self, reason: str) -> None:
        """A live connection that delivered frames ended or failed: queue :class:`StreamDown` (once per outage)."""
        if self._down is None and self._got:
            self._down = StreamDown(at_s=self._offset, reason=reason, wall=self._last_wall)
            self._down_attempts = 0
            self.outages.append({"start_s": self._offset, "end_s": None, "down_s": None, "attempts": 0,
                                 "reason": reason})
            self._put(self._down)

    def _run(self) -> None:
        failures, last_error = 0, ""
        self._offset, self._step = 0.0, 1.0 / 30.0
        try:
            while not self._stop.is_set():
                try:
                    got = self._connection()
                    if not self.source.live or self._stop.is_set():
                        return
                    last_error = "the stream stalled" if self._stalled.is_set() else "the stream ended"
                    failures = 0 if got else failures + 1
                    self._went_down(last_error)
                    log.warning("%s: %s; reconnecting", self.source.name, last_error)
                except AdplgError as exc:
                    self.error = exc
                    return
                except Exception as exc:  # noqa: BLE001 - a dropped connection, or a decoding failure
                    last_error = str(exc) if isinstance(exc, ConnectionError) else f"{type(exc).__name__}: {exc}"
                    if not self.source.live:
                        self.error = AdplgError(f"source {self.source.name}: reading failed after {self.frames} "
                                                f"frames: {last_error}")
                        return
                    failures = 1 if self._got else failures + 1  # a connection that gave frames resets the count
                    self._went_down(last_error)
                    log.warning("%s: %s", self.source.name, last_error)
                if failures > self.max_retries:
                    self.error = AdplgError(
                        f"source {self.source.name}: could not connect after {failures} attempt(s) in a row "
                        f"(max_retries {self.max_retries}); last error: {last_error}")
                    return
                wait = min(self.backoff_s * 2 ** max(failures - 1, 0), self.backoff_max_s)
                self.backoffs.append(wait)
                if self._stop.wait(wait):
                    return
                self.reconnect_attempts += 1
                self._down_attempts += 1
        finally:
            self._receiving = False
            self._put(END)


class _suppress_empty:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, queue.Empty)
