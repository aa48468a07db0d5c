"""The service's events and the interface of their outputs: a :class:`ServiceEvent` (an alert's new / update / end,
a stream's down / up) and the :class:`EventSink` protocol every output (JSON lines, webhook, MQTT) follows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from adplg.errors import AdplgError

EVENT_KINDS = ("new", "update", "end", "stream_down", "stream_up")


@dataclass(kw_only=True)
class ServiceEvent:
    """One event of one camera.

    ``kind`` is one of :data:`EVENT_KINDS`; ``camera`` the camera's name (its key in the config's ``cameras:`` map).
    Alert events carry ``event_id`` (``"<camera>-<YYYYmmddTHHMMSS>-<n>"``), stream time ``start_s`` / ``end_s``, the
    ISO-8601 UTC wall clock ``start_wall`` / ``end_wall``, the peak and mean score, the snapshot JPEG's path and the
    MP4 clip's planned path (the file exists once the clip is closed). Stream events (``stream_down`` /
    ``stream_up``) have no ``event_id``; ``start_s`` is the outage's start, ``end_s`` its end and ``outage_s`` its
    length (``stream_up``).
    """

    kind: str
    camera: str
    event_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    start_wall: str | None = None
    end_wall: str | None = None
    peak_score: float | None = None
    mean_score: float | None = None
    snapshot: str | None = None
    clip: str | None = None
    outage_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise AdplgError(f"expected one of {EVENT_KINDS}, got {self.kind!r}", parameter="ServiceEvent.kind")

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict; ``None`` fields are kept (as JSON null)."""
        return asdict(self)


class EventSink(Protocol):
    """An output of the service's events. Implementations must never raise into the scoring loop (log and count
    failures) and must not block it (a queue and a thread for anything that does I/O over a network)."""

    def camera_added(self, camera: str) -> None:
        """A camera joined the service (at start or on a reload)."""
        ...

    def camera_removed(self, camera: str) -> None:
        """A camera left the service (on a reload)."""
        ...

    def event(self, event: ServiceEvent) -> None:
        """An alert or stream event."""
        ...

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """Every emitted snippet score of a camera and whether the camera is in an alert."""
        ...

    def close(self) -> None:
        """Flush and release (the service is stopping)."""
        ...
