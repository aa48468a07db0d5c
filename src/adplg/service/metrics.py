"""The service's Prometheus metrics (``/metrics``), in a registry of its own (prometheus_client).

Per camera (label ``camera``), read from the cameras when scraped:

=================================  =========  ==========================================================================
``adplg_frames_total``             counter    frames decoded by the camera's reader
``adplg_dropped_frames_total``     counter    frames dropped because the scorer fell behind (the queue was full)
``adplg_snippets_total``           counter    16-frame snippets scored (final scores)
``adplg_alerts_total``             counter    alerts raised (``new`` events)
``adplg_reconnects_total``         counter    reconnections that brought frames back after an outage
``adplg_reconnect_attempts_total`` counter    connects tried after a connection ended or failed
``adplg_outages_total``            counter    outages (``stream_down`` events)
``adplg_camera_up``                gauge      1 while frames arrive, else 0
``adplg_camera_down``              gauge      1 while reconnecting, down or failed (what makes ``/health`` answer 503)
``adplg_realtime_factor``          gauge      stream seconds scored per wall second, last 10 s (1.0 keeps up live)
``adplg_lag_seconds``              gauge      how long the last frame waited in the queue before it was scored
``adplg_queued_frames``            gauge      frames waiting in the camera's queue
``adplg_alert_open``               gauge      1 while an alert of the camera is open
``adplg_score``                    gauge      the camera's last final snippet score
``adplg_score_latency_seconds``    histogram  a snippet's last frame received -> its score final (look-ahead delay
                                              + queue wait + backbone and scoring time)
=================================  =========  ==========================================================================

And for the shared backbone: ``adplg_backbone_forward_seconds`` (histogram, one forward pass over the snippets of
every camera ready at once) and ``adplg_backbone_snippets_total`` (snippets encoded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from adplg.errors import AdplgError

__all__ = ["ServiceMetrics"]

LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)
FORWARD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

# counter name (without _total) -> (key of Camera.counters(), help)
COUNTERS = {
    "adplg_frames": ("frames", "Frames decoded by the camera's reader."),
    "adplg_dropped_frames": ("dropped", "Frames dropped because the scorer fell behind (queue full)."),
    "adplg_snippets": ("snippets", "16-frame snippets scored (final scores)."),
    "adplg_alerts": ("alerts", "Alerts raised (new events)."),
    "adplg_reconnects": ("reconnections", "Reconnections that brought frames back after an outage."),
    "adplg_reconnect_attempts": ("reconnect_attempts", "Connects tried after a connection ended or failed."),
    "adplg_outages": ("outages", "Outages (stream_down events)."),
}


def _prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise AdplgError("the service's /metrics needs prometheus_client: install adplg[serve]") from None
    return prometheus_client


class _CameraCollector:
    """Reads every camera's counters and gauges when scraped."""

    def __init__(self, cameras: Callable[[], Iterable[Any]]):
        self.cameras = cameras

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from adplg.service.camera import DOWN_STATES

        cameras = [c for c in self.cameras() if c.plan.enabled]
        counters = {name: CounterMetricFamily(name, text, labels=["camera"]) for name, (_, text) in COUNTERS.items()}
        gauges = {
            "adplg_camera_up": GaugeMetricFamily("adplg_camera_up", "1 while frames arrive.", labels=["camera"]),
            "adplg_camera_down": GaugeMetricFamily(
                "adplg_camera_down", "1 while reconnecting, down or failed (/health 503).", labels=["camera"]),
            "adplg_realtime_factor": GaugeMetricFamily(
                "adplg_realtime_factor", "Stream seconds scored per wall second (last 10 s).", labels=["camera"]),
            "adplg_lag_seconds": GaugeMetricFamily(
                "adplg_lag_seconds", "Queue wait of the last frame scored.", labels=["camera"]),
            "adplg_queued_frames": GaugeMetricFamily(
                "adplg_queued_frames", "Frames waiting in the camera's queue.", labels=["camera"]),
            "adplg_alert_open": GaugeMetricFamily("adplg_alert_open", "1 while an alert is open.", labels=["camera"]),
            "adplg_score": GaugeMetricFamily("adplg_score", "The last final snippet score.", labels=["camera"]),
        }
        for camera in cameras:
            label = [camera.name]
            totals = camera.counters()
            for name, (key, _) in COUNTERS.items():
                counters[name].add_metric(label, totals[key])
            health = camera.health()
            gauges["adplg_camera_up"].add_metric(label, 1.0 if health["connected"] else 0.0)
            gauges["adplg_camera_down"].add_metric(label, 1.0 if health["state"] in DOWN_STATES else 0.0)
            if health["realtime_factor"] is not None:
                gauges["adplg_realtime_factor"].add_metric(label, health["realtime_factor"])
            gauges["adplg_lag_seconds"].add_metric(label, health["lag_s"])
            gauges["adplg_queued_frames"].add_metric(label, health["queued_frames"])
            gauges["adplg_alert_open"].add_metric(label, 1.0 if health["alert_open"] else 0.0)
            if health["last_score"] is not None:
                gauges["adplg_score"].add_metric(label, health["last_score"])
        yield from counters.values()
        yield from gauges.values()


class ServiceMetrics:
    """The registry of one service: the cameras' collector (``cameras()`` lists them) and the histograms."""

    def __init__(self, cameras: Callable[[], Iterable[Any]]):
        prometheus = _prometheus()
        self.registry = prometheus.CollectorRegistry(auto_describe=False)
        self.latency = prometheus.Histogram(
            "adplg_score_latency_seconds", "A snippet's last frame received -> its score final.", ["camera"],
            registry=self.registry, buckets=LATENCY_BUCKETS)
        self.forward = prometheus.Histogram(
            "adplg_backbone_forward_seconds", "One forward of the shared backbone over the ready snippets.",
            registry=self.registry, buckets=FORWARD_BUCKETS)
        self.encoded = prometheus.Counter("adplg_backbone_snippets", "Snippets encoded by the shared backbone.",
                                          registry=self.registry)
        self.registry.register(_CameraCollector(cameras))

    def observe_latency(self, camera: str, seconds: float) -> None:
        """One snippet's score latency."""
        self.latency.labels(camera).observe(seconds)

    def observe_forward(self, seconds: float, snippets: int) -> None:
        """One backbone forward of ``snippets`` snippets."""
        self.forward.observe(seconds)
        self.encoded.inc(snippets)

    def forget(self, camera: str) -> None:
        """A removed camera's histogram series."""
        try:
            self.latency.remove(camera)
        except KeyError:
            pass

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        prometheus = _prometheus()
        return prometheus.generate_latest(self.registry), prometheus.CONTENT_TYPE_LATEST
