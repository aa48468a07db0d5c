"""The outputs of ``adplg watch``, written as they happen (so a crash loses nothing already reported): alert events
as JSON lines, the timeline CSV, a JPEG per alert and a webhook (:class:`WatchOutputs`); the webhook is POSTed from a
background thread that never blocks scoring (:class:`WebhookPoster`). See :mod:`adplg.live.watch` for what each
holds.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import os
import queue
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import numpy as np

from adplg.errors import AdplgError
from adplg.io import read_secret

__all__ = ["CSV_HEADER", "SIGNATURE_HEADER", "WatchOutputs", "WebhookPoster", "check_csv_header", "check_webhook_url",
           "read_webhook_secret", "save_jpeg"]

log = logging.getLogger(__name__)


def check_webhook_url(url: str, parameter: str) -> str:
    """``url`` when it is an http:// or https:// URL, else an :class:`AdplgError` about ``parameter``."""
    if not str(url).lower().startswith(("http://", "https://")):
        raise AdplgError(f"expected an http:// or https:// URL, got {url!r}", parameter=parameter)
    return url


SIGNATURE_HEADER = "X-Adplg-Signature"  # "sha256=<hex HMAC-SHA256 of the body>" when a webhook secret is set


def read_webhook_secret(env: str | None = None, file: str | Path | None = None) -> bytes | None:
    """The webhook secret from the environment variable ``env`` or the file ``file`` (its first line; at most one
    of them), None when neither is given. An unset or empty variable, or a missing or empty file, is an
    :class:`AdplgError` naming it (never the secret)."""
    if env and file:
        raise AdplgError(f"expected the webhook secret from an environment variable or a file, got both ({env} and "
                         f"{file})", parameter="webhook_secret_env")
    secret = read_secret("the webhook secret", env=env, file=file, env_parameter="webhook_secret_env",
                         file_parameter="webhook_secret_file")
    return None if secret is None else secret.encode()

class WebhookPoster:
    """POSTs JSON events to ``url`` from a daemon thread. ``post(event)`` never blocks: an event that does not fit
    the bounded queue is dropped (counted). Each event is tried ``retries + 1`` times with a doubling backoff.

    With a ``secret`` every POST carries ``X-Adplg-Signature: sha256=<hex>``, the HMAC-SHA256 of its body under
    the secret (the receiver recomputes it to know the event is ours); the secret is never logged or reported.
    Failures are said on the log (a warning): the first undelivered or dropped event at once, then a count at most
    every ``warn_every_s`` seconds; :meth:`close` returns the counters."""

    def __init__(self, url: str, queue_size: int = 100, retries: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 5.0, secret: bytes | str | None = None, warn_every_s: float = 60.0):
        check_webhook_url(url, "url")
        self.url, self.retries, self.backoff_s, self.timeout_s = url, int(retries), float(backoff_s), timeout_s
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.warn_every_s = float(warn_every_s)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._warned_at: float | None = None  # time.monotonic() of the last warning
        self._warned_lost = 0  # failed + dropped when last warned
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adplg-webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"WebhookPoster({self.url!r}, signed={self._secret is not None})"

    def post(self, event: dict) -> None:
        """Queue ``event`` for sending (never blocks); counted as dropped when the queue is full."""
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            self._warn("an event was dropped: the webhook's queue is full (the endpoint is too slow)")

    def _warn(self, what: str) -> None:
        """Say a failure: the first at once, then the counts at most every ``warn_every_s`` seconds."""
        with self._lock:
            now = time.monotonic()
            lost = self.failed + self.dropped
            if self._warned_at is None:
                log.warning("webhook %s: %s; further failures are counted (every %g s here, and in the final line)",
                            self.url, what, self.warn_every_s)
            elif now - self._warned_at >= self.warn_every_s and lost > self._warned_lost:
                log.warning("webhook %s: %d event(s) not delivered so far (%d failed, %d dropped); last: %s",
                            self.url, lost, self.failed, self.dropped, what)
            else:
                return
            self._warned_at, self._warned_lost = now, lost

    def _send(self, event: dict) -> str | None:
        """POST one event (with retries); None when delivered, else the last error."""
        data = json.dumps(event).encode()
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(self._secret, data, hashlib.sha256).hexdigest()
        error = "not tried"
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(self.url, data=data, method="POST", headers=headers)
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return None
                    error = f"HTTP {response.status}"
            except Exception as exc:  # noqa: BLE001 - any failure of the endpoint: retry, then count it
                error = f"{type(exc).__name__}: {exc}"
                log.debug("webhook %s: attempt %d failed: %s", self.url, attempt + 1, error)
            if attempt < self.retries and self._stop.wait(self.backoff_s * 2 ** attempt):
                return error
        return error

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            error = self._send(event)
            if error is None:
                self.sent += 1
            else:
                self.failed += 1
                self._warn(f"a {event.get('kind', 'event')} event was not delivered after {self.retries + 1} "
                           f"attempt(s) ({error})")

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
                "unsent": self.queue.qsize(), "signed": self._secret is not None}


CSV_HEADER = ("snippet", "start_s", "end_s", "score")  # the columns of the timeline CSV of adplg watch


def check_csv_header(csv_path: str | Path) -> None:
    """An existing, non-empty timeline CSV must have :data:`CSV_HEADER` (rows are appended under it); else an
    :class:`AdplgError` about ``csv_path`` naming the file and both headers. A missing or empty file is fine."""
    path = Path(csv_path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AdplgError(f"{path}: cannot read its header to append to it ({type(exc).__name__}: {exc}); expected "
                         f"{','.join(CSV_HEADER)}", parameter="csv_path") from None
    if tuple(header) != CSV_HEADER:
        raise AdplgError(f"{path}: its header is {','.join(header)!r}, but this timeline's is "
                         f"{','.join(CSV_HEADER)!r}: rows would be appended under another header (name a new file "
                         f"or move this one)", parameter="csv_path")


def save_jpeg(image: np.ndarray, path: Path) -> Path:
    """``image [H, W, 3]`` uint8 RGB written atomically as a JPEG (quality 90) at ``path``; returns ``path``."""
    from PIL import Image

    from adplg.io import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


SNAPSHOT_NAMES = ("alert-*.jpg",)  # the JPEGs a watch writes into its snapshots folder (see WatchOutputs.snapshot)


class WatchOutputs:
    """Where :func:`~adplg.live.watch.watch` writes as it goes, each optional (the parameters of ``watch``):
    ``events`` (JSON lines: a path, appended; ``"-"`` for stdout; or an open text file), ``csv_path`` (the timeline
    CSV, appended), ``snapshots`` (a folder for a JPEG per alert) and ``webhook`` (an http(s) URL every event is
    POSTed to, by a :class:`WebhookPoster`, signed with ``webhook_secret`` when given). :meth:`check` checks every
    path without creating anything (call it before any loading; the constructor checks again); an
    :class:`~adplg.errors.AdplgError` names the bad one. :meth:`close` finishes them."""

    @staticmethod
    def check(events: str | Path | IO | None, csv_path: str | Path | None, snapshots: str | Path | None,
              webhook: str | None, overwrite: bool = False) -> None:
        """Check the outputs' paths, the CSV's header (:func:`check_csv_header`) and the webhook URL; creates
        nothing. A ``snapshots`` folder holding ``alert-*.jpg`` files an earlier watch did not write, or another
        command's folder, is refused (:func:`~adplg.io.check_output_owner`), unless ``overwrite``."""
        from adplg.io import check_output_file, check_output_owner

        if isinstance(events, (str, Path)) and str(events) != "-":
            check_output_file(events, "events file")
        if csv_path is not None:
            check_output_file(csv_path, "timeline CSV file (csv_path)")
            check_csv_header(csv_path)
        if snapshots is not None:
            check_output_owner(snapshots, "watch", SNAPSHOT_NAMES, what="snapshots folder", overwrite=overwrite)
        if webhook:
            check_webhook_url(webhook, "webhook")

    def __init__(self, events: str | Path | IO | None, csv_path: str | Path | None, snapshots: str | Path | None,
                 webhook: str | None, source: str, webhook_secret: bytes | str | None = None,
                 overwrite: bool = False):
        self.check(events, csv_path, snapshots, webhook, overwrite=overwrite)
        self.source = source
        self.webhook = WebhookPoster(webhook, secret=webhook_secret) if webhook else None
        self._own_events = isinstance(events, (str, Path)) and str(events) != "-"
        self.events_lost = False  # the events stream's reader went away (broken pipe)
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
                self.csv.writerow(CSV_HEADER)
                self.csv_file.flush()
        self.snapshots = Path(snapshots) if snapshots is not None else None
        if self.snapshots is not None:
            from adplg.io import mark_output_dir

            mark_output_dir(self.snapshots, "watch")

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
        path = self.snapshots / f"alert-{number:04d}-{start_s:09.2f}s.jpg"
        save_jpeg(image, path)
        return str(path)

    def event(self, record: dict) -> None:
        """One event record: a JSON line, and a webhook POST. A reader that closed the events stream (``--events -
        | head -1``) ends the JSON lines quietly; everything else goes on."""
        if self.events is not None:
            try:
                self.events.write(json.dumps(record) + "\n")
                self.events.flush()
            except BrokenPipeError:
                self._events_closed()
        if self.webhook is not None:
            self.webhook.post(record)

    def _events_closed(self) -> None:
        """The reader of the events stream went away: stop writing JSON lines. For stdout, its descriptor is pointed
        at ``os.devnull`` so that nothing still buffered fails again when the interpreter exits."""
        stream, self.events = self.events, None
        self.events_lost = True
        to_stdout = any(stream is s for s in (sys.stdout, sys.__stdout__))
        try:
            if stream is not None and to_stdout:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            elif stream is not None and self._own_events:
                stream.close()
        except (OSError, ValueError):
            pass
        log.warning("%s: the reader of the events stream closed it (broken pipe): no more JSON lines; the CSV, "
                    "snapshots and webhook go on", self.source)

    def close(self) -> dict:
        """Close the files and send what the webhook has queued; returns the webhook's counters (``{}`` without
        one)."""
        if self._own_events and self.events is not None:
            try:
                self.events.close()
            except BrokenPipeError:
                self.events_lost = True
        if self.csv_file is not None:
            self.csv_file.close()
        return self.webhook.close() if self.webhook is not None else {}
