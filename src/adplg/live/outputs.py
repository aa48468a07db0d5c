"""The outputs of ``adplg watch``, written as they happen (so a crash loses nothing already reported): alert events
as JSON lines, the timeline CSV, a JPEG per alert and a webhook (:class:`WatchOutputs`); the webhook is POSTed from a
background thread that never blocks scoring (:class:`WebhookPoster`). See :mod:`adplg.live.watch` for what each
holds.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import numpy as np

from adplg.errors import AdplgError

__all__ = ["WatchOutputs", "WebhookPoster", "check_webhook_url"]

log = logging.getLogger(__name__)


def check_webhook_url(url: str, parameter: str) -> str:
    """``url`` when it is an http:// or https:// URL, else an :class:`AdplgError` about ``parameter``."""
    if not str(url).lower().startswith(("http://", "https://")):
        raise AdplgError(f"expected an http:// or https:// URL, got {url!r}", parameter=parameter)
    return url


class WebhookPoster:
    """POSTs JSON events to ``url`` from a daemon thread. ``post(event)`` never blocks: an event that does not fit
    the bounded queue is dropped (counted). Each event is tried ``retries + 1`` times with a doubling backoff."""

    def __init__(self, url: str, queue_size: int = 100, retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 5.0):
        check_webhook_url(url, "url")
        self.url, self.retries, self.backoff_s, self.timeout_s = url, int(retries), float(backoff_s), timeout_s
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adplg-webhook", daemon=True)
        self._thread.start()

    def post(self, event: dict) -> None:
        """Queue ``event`` for sending (never blocks); counted as dropped when the queue is full."""
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _send(self, event: dict) -> bool:
        data = json.dumps(event).encode()
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(self.url, data=data, method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return True
            except Exception as exc:  # noqa: BLE001 - any failure of the endpoint: retry, then count it
                log.debug("webhook %s: attempt %d failed: %s", self.url, attempt + 1, exc)
            if attempt < self.retries and self._stop.wait(self.backoff_s * 2 ** attempt):
                return False
        return False

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            if self._send(event):
                self.sent += 1
            else:
                self.failed += 1

    def close(self, timeout_s: float = 10.0) -> dict:
        """Send what is queued (for at most ``timeout_s`` seconds), then stop; returns the counters."""
        deadline = time.monotonic() + timeout_s
        while not self.queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        return {"url": self.url, "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "unsent": self.queue.qsize()}


class WatchOutputs:
    """Where :func:`~adplg.live.watch.watch` writes as it goes, each optional (the parameters of ``watch``):
    ``events`` (JSON lines: a path, appended; ``"-"`` for stdout; or an open text file), ``csv_path`` (the timeline
    CSV, appended), ``snapshots`` (a folder for a JPEG per alert) and ``webhook`` (an http(s) URL every event is
    POSTed to, by a :class:`WebhookPoster`). Every path is checked when constructed, before any loading; an
    :class:`~adplg.errors.AdplgError` names the bad one. :meth:`close` finishes them."""

    def __init__(self, events: str | Path | IO | None, csv_path: str | Path | None, snapshots: str | Path | None,
                 webhook: str | None, source: str):
        from adplg.io import check_output_dir, check_output_file

        self.source = source
        if isinstance(events, (str, Path)) and str(events) != "-":
            check_output_file(events, "events file")
        if csv_path is not None:
            check_output_file(csv_path, "timeline CSV file (csv_path)")
        if snapshots is not None:
            check_output_dir(snapshots, "snapshots folder")
        if webhook:
            check_webhook_url(webhook, "webhook")
        self.webhook = WebhookPoster(webhook) if webhook else None
        self._own_events = isinstance(events, (str, Path)) and str(events) != "-"
        if events is None:
            self.events = None
        elif str(events) == "-" and not hasattr(events, "write"):
            self.events = sys.stdout
        elif hasattr(events, "write"):
            self.events = events
        else:
            self.events = open(events, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.csv_file = self.csv = None
        if csv_path is not None:
            path = Path(csv_path)
            new = not path.exists() or path.stat().st_size == 0
            self.csv_file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.csv = csv.writer(self.csv_file)
            if new:
                self.csv.writerow(["snippet", "start_s", "end_s", "score"])
                self.csv_file.flush()
        self.snapshots = Path(snapshots) if snapshots is not None else None
        if self.snapshots is not None:
            self.snapshots.mkdir(parents=True, exist_ok=True)

    def row(self, index: int, start_s: float, end_s: float, score: float) -> None:
        """One final snippet score (presentation times in seconds) as a timeline CSV row."""
        if self.csv is not None:
            assert self.csv_file is not None  # opened with the writer
            self.csv.writerow([index, f"{start_s:.6f}", f"{end_s:.6f}", f"{score:.6f}"])
            self.csv_file.flush()

    def snapshot(self, image: np.ndarray, number: int, start_s: float) -> str | None:
        """``image [H, W, 3]`` uint8 as the JPEG of alert ``number`` starting at ``start_s``; its path, or None when
        no snapshots are kept."""
        if self.snapshots is None or image is None:
            return None
        from PIL import Image

        from adplg.io import atomic_write_bytes

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        path = self.snapshots / f"alert-{number:04d}-{start_s:09.2f}s.jpg"
        atomic_write_bytes(path, buffer.getvalue())
        return str(path)

    def event(self, record: dict) -> None:
        """One event record: a JSON line, and a webhook POST."""
        if self.events is not None:
            self.events.write(json.dumps(record) + "\n")
            self.events.flush()
        if self.webhook is not None:
            self.webhook.post(record)

    def close(self) -> dict:
        """Close the files and send what the webhook has queued; returns the webhook's counters (``{}`` without
        one)."""
        if self._own_events and self.events is not None:
            self.events.close()
        if self.csv_file is not None:
            self.csv_file.close()
        return self.webhook.close() if self.webhook is not None else {}
