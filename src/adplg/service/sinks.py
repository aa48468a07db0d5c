"""The service's own event outputs (:class:`~adplg.service.events.EventSink` implementations) and :class:`SinkSet`,
which hands every call to each sink and keeps a failing sink from reaching the scoring loop.

* :class:`JsonLinesSink`: ``<outputs>/events.jsonl``, one ``ServiceEvent.to_dict()`` per line, appended and flushed
  per event (a crash loses nothing already reported);
* :class:`RecentEvents`: the last events in memory, for ``/events``;
* :class:`WebhookSink`: every event POSTed as JSON by :class:`~adplg.live.outputs.WebhookPoster` (background thread,
  bounded queue, retries; never blocks).

The MQTT sink is :class:`adplg.service.mqtt.MqttSink`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from pathlib import Path

from adplg.service.events import EventSink, ServiceEvent

__all__ = ["JsonLinesSink", "RecentEvents", "SinkSet", "WebhookSink"]

log = logging.getLogger(__name__)


class JsonLinesSink:
    """Events appended to a JSON lines file (one :meth:`ServiceEvent.to_dict` per line, flushed per line)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def camera_added(self, camera: str) -> None:
        """Nothing to write."""

    def camera_removed(self, camera: str) -> None:
        """Nothing to write."""

    def event(self, event: ServiceEvent) -> None:
        """Append the event as one JSON line."""
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(event.to_dict()) + "\n")
                self._file.flush()

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """Scores are not written here (the events are)."""

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


class RecentEvents:
    """The last ``size`` events as dicts (newest last), for ``/events``; safe to read from another thread."""

    def __init__(self, size: int = 200):
        self._events: deque[dict] = deque(maxlen=int(size))
        self._lock = threading.Lock()

    def camera_added(self, camera: str) -> None:
        """Nothing to keep."""

    def camera_removed(self, camera: str) -> None:
        """Nothing to keep."""

    def event(self, event: ServiceEvent) -> None:
        """Keep the event."""
        with self._lock:
            self._events.append(event.to_dict())

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """Scores are not kept."""

    def close(self) -> None:
        """Nothing to release."""

    def events(self, camera: str | None = None, limit: int | None = None) -> list[dict]:
        """The kept events (of ``camera`` when given), oldest first; the last ``limit`` when given."""
        with self._lock:
            out = [e for e in self._events if camera is None or e["camera"] == camera]
        return out[-limit:] if limit else out


class WebhookSink:
    """Every event POSTed as JSON (``ServiceEvent.to_dict()``) by a :class:`~adplg.live.outputs.WebhookPoster`."""

    def __init__(self, url: str, secret: bytes | None = None):
        from adplg.live.outputs import WebhookPoster

        self.poster = WebhookPoster(url, secret=secret)
        self.counters: dict = {}

    def camera_added(self, camera: str) -> None:
        """Not posted."""

    def camera_removed(self, camera: str) -> None:
        """Not posted."""

    def event(self, event: ServiceEvent) -> None:
        """Queue the event for the POST (never blocks; a full queue drops it, counted)."""
        self.poster.post(event.to_dict())

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """Scores are not posted."""

    def close(self) -> None:
        """Send what is queued (10 s at most) and stop."""
        self.counters = self.poster.close()


class SinkSet:
    """Every sink of the service, called in order. A sink that raises is logged (the first failure of each sink at
    once, then at most one line a minute) and counted in :attr:`failures`; the other sinks and the scoring loop go
    on."""

    def __init__(self, sinks: list[EventSink] | None = None):
        self.sinks: list[EventSink] = list(sinks or [])
        self.failures: dict[str, int] = {}
        self._warned: dict[str, float] = {}

    def add(self, sink: EventSink) -> None:
        """Add a sink."""
        self.sinks.append(sink)

    def _call(self, method: str, *args) -> None:
        for sink in self.sinks:
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # noqa: BLE001 - an output never stops the scoring
                name = type(sink).__name__
                self.failures[name] = self.failures.get(name, 0) + 1
                now = time.monotonic()
                if now - self._warned.get(name, -1e9) >= 60.0:
                    self._warned[name] = now
                    log.warning("event output %s failed in %s (%s: %s); %d failure(s) so far", name, method,
                                type(exc).__name__, exc, self.failures[name])

    def camera_added(self, camera: str) -> None:
        """Tell every sink a camera joined."""
        self._call("camera_added", camera)

    def camera_removed(self, camera: str) -> None:
        """Tell every sink a camera left."""
        self._call("camera_removed", camera)

    def event(self, event: ServiceEvent) -> None:
        """Hand an event to every sink."""
        self._call("event", event)

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """Hand a snippet score to every sink."""
        self._call("state", camera, anomalous, score)

    def close(self) -> None:
        """Close every sink."""
        self._call("close")
