"""Helpers of the camera service's tests (``tests/test_serve*.py``): a recording event sink, a config over the tiny
random model, running a service in a thread, waiting for a condition."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from adplg.service.runner import Service


class FakeSink:
    """An EventSink that records every call."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.events: list[dict] = []

    def camera_added(self, camera):
        self.calls.append(("added", camera))

    def camera_removed(self, camera):
        self.calls.append(("removed", camera))

    def event(self, event):
        self.events.append(event.to_dict())

    def state(self, camera, anomalous, score):
        self.calls.append(("state", camera, anomalous, score))

    def close(self):
        self.calls.append(("close",))


def settings(run, weights, out: Path, cameras: dict, **extra) -> dict:
    """A service config mapping: the tiny random model and CLIP, CPU, no HTTP unless asked."""
    return {"checkpoint": str(run.checkpoint), "weights": str(weights), "device": "cpu", "window": 64, "delay": 2,
            "outputs": str(out), "http": {"enabled": False},
            "reader": {"backoff_s": 0.1, "max_retries": 0, "retry_down_s": 30}, "cameras": cameras, **extra}


def start(service: Service) -> threading.Thread:
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    return thread


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def midpoint_threshold(scores) -> float:
    """A threshold between the two middle scores: some snippets alert, and none sits on it."""
    s = np.sort(np.asarray(scores))
    k = len(s) // 2
    return float((s[k - 1] + s[k]) / 2)
