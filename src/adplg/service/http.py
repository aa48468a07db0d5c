"""The service's HTTP endpoints (stdlib ``http.server`` in a daemon thread):

* ``GET /health``: JSON ``{"status": "ok" | "degraded", "service", "uptime_s", "cameras": {name: {...}}}`` with each
  camera's state, ``connected``, ``realtime_factor``, ``lag_s``, ``dropped`` frames, counters, the open alert and the
  last error (URLs redacted); status 503 while any enabled camera is reconnecting, down or failed, else 200;
* ``GET /metrics``: Prometheus text format (:mod:`adplg.service.metrics`);
* ``GET /events?camera=NAME&limit=N``: the recent events (``ServiceEvent.to_dict()``), oldest first.

With a token (required when the address is not loopback: :class:`~adplg.service.config.ServiceConfig` refuses the
config otherwise) every request needs ``Authorization: Bearer <token>``, else 401. The token comes from an
environment variable or the first line of a file, never from the config itself, and is never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from adplg.errors import AdplgError
from adplg.io import read_secret

__all__ = ["HttpServer", "read_token"]

log = logging.getLogger(__name__)


def read_token(env: str | None, file: str | Path | None) -> str | None:
    """The bearer token from the environment variable ``env`` or the first line of ``file`` (None when neither is
    named); an unset variable or a missing or empty file is an :class:`AdplgError` naming it (never the token)."""
    return read_secret("the HTTP bearer token", env=env, file=file, env_parameter="http.token_env",
                       file_parameter="http.token_file")

class HttpServer:
    """``/health``, ``/metrics`` and ``/events`` on ``host:port`` (port 0: a free one; :attr:`address` says which).
    ``health()`` returns ``(status code, JSON body)``, ``metrics()`` ``(body, content type)``, ``events(camera,
    limit)`` a list."""

    def __init__(self, host: str, port: int, *, health: Callable[[], tuple[int, dict]],
                 metrics: Callable[[], tuple[bytes, str]], events: Callable[[str | None, int | None], list],
                 token: str | None = None):
        self.host, self.port, self.token = host, int(port), token
        self.health, self.metrics, self.events = health, metrics, events
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"HttpServer({self.host}:{self.port}, token={'set' if self.token else 'none'})"

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self.server is None:
            return self.host, self.port
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        """Bind and serve from a daemon thread; a port in use is an :class:`AdplgError`."""
        handler = _handler(self)
        server_cls = _V6Server if ":" in self.host else ThreadingHTTPServer
        try:
            self.server = server_cls((self.host, self.port), handler)
        except OSError as exc:
            raise AdplgError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); expected a free "
                             "address", parameter="http.port") from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="adplg-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def authorised(self, header: str | None) -> bool:
        """Whether the ``Authorization`` header carries the token (always, without a token)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(owner: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "adplg"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.debug("http %s: " + format, self.address_string(), *args)

        def _send(self, code: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: Any) -> None:
            self._send(code, json.dumps(data, indent=1).encode() + b"\n", "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not owner.authorised(self.headers.get("Authorization")):
                self._send(401, b'{"error": "a bearer token is required"}\n', "application/json",
                           {"WWW-Authenticate": 'Bearer realm="adplg"'})
                return
            url = urlsplit(self.path)
            try:
                if url.path == "/health":
                    self._json(*owner.health())
                elif url.path == "/metrics":
                    body, content_type = owner.metrics()
                    self._send(200, body, content_type)
                elif url.path == "/events":
                    query = parse_qs(url.query)
                    limit = query.get("limit", [None])[0]
                    self._json(200, owner.events(query.get("camera", [None])[0],
                                                 int(limit) if limit and limit.isdigit() else None))
                else:
                    self._json(404, {"error": f"no such endpoint {url.path}; try /health, /metrics or /events"})
            except Exception as exc:  # noqa: BLE001 - a failing endpoint answers 500, the service goes on
                log.warning("http %s: %s: %s", url.path, type(exc).__name__, exc)
                self._json(500, {"error": type(exc).__name__})

    return Handler
