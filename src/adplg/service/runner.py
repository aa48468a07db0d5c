"""The camera service's loop (``adplg serve``): every camera in one process, one backbone for all.

:class:`Service` loads the checkpoint and the backbone once, starts one reader thread per enabled camera
(:class:`~adplg.service.camera.Camera`) and runs one loop: each pass hands every camera's queued frames to its
scoring state, then encodes the complete snippets of every camera that has some ready (and no frame waiting, or a
full batch) in **one forward pass** of the shared backbone (at most ``batch_snippets`` snippets; a camera that cannot
fit waits for the next pass, the first camera served rotates), and scores each camera's snippets with its own online
scorer and alert state. A camera that fails is reported and retried (see :mod:`adplg.service.camera`); the others go
on.

Control, safe from signal handlers and other threads: :meth:`Service.request_stop` (SIGTERM) ends the loop, then
every camera is closed (open alerts get their ``end`` event, clips are closed) and every output flushed;
:meth:`Service.request_reload` (SIGHUP) re-reads the config file at the next pass: cameras added, removed or changed
(their effective settings or alert rules) are started, closed or restarted, the others keep running untouched. A
config that does not validate is logged and the running one kept; settings of the shared parts (checkpoint, backbone,
device, outputs, HTTP, MQTT, webhook, clips) need a restart: a reload that changes them says so and keeps the running
ones. :meth:`Service.reload` and :meth:`Service.stop` do the same from another thread and wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from adplg.errors import AdplgError
from adplg.service.camera import DOWN_STATES, Camera, Shared
from adplg.service.config import ServiceConfig, load_service_config, resolve_path
from adplg.service.events import EventSink
from adplg.service.redact import RedactingFilter
from adplg.service.sinks import JsonLinesSink, RecentEvents, SinkSet, WebhookSink

__all__ = ["OUTPUT_NAMES", "RESTART_KEYS", "Service"]

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("events.jsonl", "snapshots", "clips")  # what the service writes into its outputs folder
IDLE_S = 0.005  # the loop's sleep when no camera had anything
POLL_ITEMS = 2 * 16  # queue items a camera hands over per pass (two snippets), so every camera gets its turn
# the settings of the shared parts: a reload keeps the running values (a restart applies them)
RESTART_KEYS = ("name", "checkpoint", "weights", "backbone", "crops", "device", "precision", "window", "delay",
                "batch_snippets", "outputs", "snapshots", "http", "webhook", "mqtt", "clips")


class Service:
    """See the module docstring. ``config_path``: the YAML file (re-read by reloads; relative paths are relative
    to its folder, else to ``base_dir`` or the working directory). ``sinks``: extra event outputs (tests, embedders).
    ``scorer`` / ``extractor``: already loaded ones (else loaded from the config). ``say``: status lines."""

    def __init__(self, config: ServiceConfig, *, config_path: str | Path | None = None,
                 base_dir: str | Path | None = None, sinks: list[EventSink] | None = None, scorer=None,
                 extractor=None, say: Callable[[str], None] | None = None, overwrite: bool = False):
        from adplg.io import check_output_owner, mark_output_dir
        from adplg.live.outputs import read_webhook_secret
        from adplg.service.http import read_token

        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.base = Path(base_dir) if base_dir is not None else (
            self.config_path.parent if self.config_path is not None else Path.cwd())
        self.say = say or log.info
        # every check before the (slow) loading
        outputs = resolve_path(config.outputs, self.base) or config.outputs
        self.outputs = check_output_owner(outputs, "serve", OUTPUT_NAMES, what="outputs folder", overwrite=overwrite)
        http = config.http
        token = read_token(http.token_env, resolve_path(http.token_file, self.base)) if http.enabled else None
        secret = None
        if config.webhook is not None:
            from adplg.live.outputs import check_webhook_url

            check_webhook_url(config.webhook.url, "webhook.url")
            secret = read_webhook_secret(config.webhook.secret_env, resolve_path(config.webhook.secret_file,
                                                                                 self.base))
        mqtt = None
        if config.mqtt is not None:
            from adplg.service.config import mqtt_config

            mqtt = mqtt_config(config.mqtt)
            if mqtt.password_file:
                mqtt = mqtt.model_copy(update={"password_file": resolve_path(mqtt.password_file, self.base)})
            from adplg.service.mqtt import read_mqtt_password

            read_mqtt_password(mqtt)  # an unset variable or an empty file: said before the model loads
        from adplg.service.metrics import ServiceMetrics

        self.metrics = ServiceMetrics(lambda: list(self.cameras.values()))
        self.scorer = scorer if scorer is not None else self._load_scorer()
        self.extractor = extractor if extractor is not None else self._load_extractor()
        precision = config.precision or self.scorer.config.eval.precision
        mark_output_dir(self.outputs, "serve")
        self.recent = RecentEvents(http.recent_events)
        self.sinks = SinkSet([JsonLinesSink(self.outputs / "events.jsonl"), self.recent])
        if config.webhook is not None:
            self.sinks.add(WebhookSink(config.webhook.url, secret))
        if mqtt is not None:
            from adplg.service.mqtt import MqttSink

            self.sinks.add(MqttSink(mqtt, config.name))
        for sink in sinks or []:
            self.sinks.add(sink)
        self.shared = Shared(scorer=self.scorer, extractor=self.extractor, sinks=self.sinks, outputs=self.outputs,
                             snapshots=config.snapshots, clips=config.clips, window=config.window, delay=config.delay,
                             precision=precision, say=self.say, observe_latency=self.metrics.observe_latency)
        self.cameras: dict[str, Camera] = {}
        self.http = None
        if http.enabled:
            from adplg.service.http import HttpServer

            self.http = HttpServer(http.host, http.port, health=self.health, metrics=self.metrics.exposition,
                                   events=self.recent.events, token=token)
        self.started_at: float | None = None
        self._stop_requested = False
        self._reload_requested = False
        self._reloads: list[tuple[ServiceConfig | None, threading.Event, list]] = []
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._finished = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._turn = 0
        self.forwards = self.multi_camera_forwards = 0  # backbone forwards, and those over several cameras
        self._next_prune = 0.0
        self._filter = RedactingFilter()
        self._closed = False

    # ---- loading
    def _load_scorer(self):
        from adplg.inference.scorer import load

        return load(resolve_path(self.config.checkpoint, self.base), device=self.config.device)

    def _load_extractor(self):
        from adplg.features.extractors import extractor_for_model

        c = self.config
        return extractor_for_model(self.scorer.config.data.feature_dim, resolve_path(c.weights, self.base),
                                   backbone=c.backbone, crops=c.crops, device=self.scorer.device,
                                   batch_snippets=c.batch_snippets, video="the cameras")

    def _camera(self, plan) -> Camera:
        from adplg.inference.alerts import resolve_rules

        overrides = {k: v for k, v in plan.rules.model_dump().items() if v is not None}
        rules, source = resolve_rules(self.scorer.rules, self.scorer.rules_source, alerts_file=plan.alerts,
                                      **overrides)
        self.scorer.check_rules(rules)
        return Camera(plan, rules, source, self.shared)

    # ---- running
    def start(self) -> None:
        """Serve HTTP, redact URLs in the log, and start every enabled camera (called by :meth:`run`)."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        if self.http is not None:
            self.http.start()
            self.say(f"http: {self.http.url}/health, /metrics, /events" + (" (bearer token required)"
                                                                            if self.http.token else ""))
        for plan in self.config.plans(self.base).values():
            self._add(plan)
        self.say(f"serving {sum(c.plan.enabled for c in self.cameras.values())} camera(s) with one "
                 f"{self.extractor.backbone} backbone on {self.extractor.device}; events in {self.outputs}")

    def _add(self, plan) -> None:
        camera = self._camera(plan)
        with self._lock:
            self.cameras[plan.name] = camera
        self.sinks.camera_added(plan.name)
        camera.start()

    def _remove(self, name: str) -> None:
        with self._lock:
            camera = self.cameras.pop(name)
        camera.close()
        self.metrics.forget(name)
        self.sinks.camera_removed(name)

    def run(self) -> None:
        """Run until :meth:`request_stop` (or :meth:`stop`), then close everything (see the module docstring)."""
        self._loop_thread = threading.current_thread()
        try:
            self.start()
            self._running.set()
            while not self._stop_requested:
                if self._reload_requested:
                    self._apply_reloads()
                if not self.step():
                    time.sleep(IDLE_S)
        finally:
            self._running.clear()
            try:
                self.close()
            finally:
                self._finished.set()

    def step(self) -> bool:
        """One pass: every camera's queued frames, retries, one batched backbone forward, clip retention; returns
        whether anything was done."""
        now = time.monotonic()
        busy = False
        for camera in list(self.cameras.values()):
            try:
                busy |= camera.poll(POLL_ITEMS) > 0
                busy |= camera.maybe_retry(now)
            except Exception as exc:  # noqa: BLE001 - one camera's failure never stops the others
                log.exception("camera %s failed; restarting it", camera.name)
                self._restart(camera.name, exc)
        busy |= self._encode()
        if self.config.clips.enabled and now >= self._next_prune:
            self._prune(now)
        return busy

    def _restart(self, name: str, exc: Exception) -> None:
        camera = self.cameras.get(name)
        if camera is None:
            return
        try:
            camera.close()
        except Exception:  # noqa: BLE001 - closing a broken camera may fail too
            log.exception("camera %s: closing failed", name)
        fresh = self._camera(camera.plan)
        fresh.last_error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.cameras[name] = fresh
        fresh.start()

    def _encode(self) -> bool:
        """One forward of the shared backbone over the ready snippets of several cameras; False when none."""
        import torch

        from adplg.precision import autocast

        limit = self.config.batch_snippets
        cameras = [c for c in self.cameras.values() if c.loop is not None and c.loop.ready and
                   (len(c.loop.ready) >= limit or c.queue_empty())]
        if not cameras:
            return False
        self._turn = (self._turn + 1) % len(cameras)
        order = cameras[self._turn:] + cameras[:self._turn]
        share = max(1, limit // len(order))  # an equal share each, then what is left in turn
        jobs, total = [], 0
        while total < limit:
            took = False
            for camera in order:
                assert camera.loop is not None  # filtered above
                if total >= limit or not camera.loop.ready:
                    continue
                batch, fresh = camera.loop.take(min(share, limit - total))
                jobs.append((camera, batch, fresh))
                total += len(fresh)
                took = True
            if not took:
                break
        self.forwards += 1 if total else 0
        self.multi_camera_forwards += 1 if len({id(c) for c, _, f in jobs if f}) > 1 else 0
        features, seconds = None, 0.0
        if total:
            began = time.perf_counter()
            with torch.inference_mode(), autocast(self.extractor.device, self.shared.precision):
                views = [self.extractor.views(fresh) for _, _, fresh in jobs if fresh]
                merged = views[0] if len(views) == 1 else [torch.cat(parts) for parts in zip(*views)]
                features = self.extractor.encode_views(merged, total)  # [total, crops, D]
            seconds = time.perf_counter() - began
            self.metrics.observe_forward(seconds, total)
        offset = 0
        for camera, batch, fresh in jobs:
            assert camera.loop is not None
            n = len(fresh)
            if n:
                camera.loop.measured_encode(seconds * n / total, n)
            encoded = iter(features[offset:offset + n]) if features is not None else iter(())
            camera.loop.accept(batch, encoded)
            offset += n
        return True

    def _prune(self, now: float) -> None:
        from adplg.service.clips import prune_clips

        clips = self.config.clips
        self._next_prune = now + clips.prune_every_s
        total = None if clips.max_total_mb is None else int(clips.max_total_mb * 1e6)
        try:
            removed = prune_clips(self.outputs / "clips", clips.max_age_s, total)
        except Exception as exc:  # noqa: BLE001 - retention never stops the scoring
            log.warning("clip retention failed: %s: %s", type(exc).__name__, exc)
            return
        if removed:
            log.info("clip retention: removed %d clip(s)", len(removed))

    # ---- control
    def request_stop(self) -> None:
        """Ask the loop to stop at its next pass (safe in a signal handler: it only sets a flag)."""
        self._stop_requested = True

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop, and wait (from another thread) until every camera is closed and the outputs flushed."""
        self.request_stop()
        if self._loop_thread is not None and threading.current_thread() is not self._loop_thread:
            self._finished.wait(timeout_s)
        elif self._loop_thread is None:
            self.close()

    def request_reload(self) -> None:
        """Ask the loop to re-read the config file at its next pass (safe in a signal handler)."""
        self._reload_requested = True

    def reload(self, config: ServiceConfig | None = None, timeout_s: float = 60.0) -> bool:
        """Apply ``config`` (default: the config file read again): returns whether it was applied. From another
        thread while the loop runs, the loop applies it at its next pass and this waits."""
        if not self._running.is_set() or threading.current_thread() is self._loop_thread:
            return self._apply(config)
        done, result = threading.Event(), []  # type: threading.Event, list[bool]
        with self._lock:
            self._reloads.append((config, done, result))
        self._reload_requested = True
        if not done.wait(timeout_s):
            raise AdplgError(f"reload: the service's loop did not apply it within {timeout_s:g} s")
        return bool(result and result[0])

    def _apply_reloads(self) -> None:
        self._reload_requested = False
        with self._lock:
            waiting, self._reloads = self._reloads, []
        if not waiting:
            self._apply(None)
        for config, done, result in waiting:
            result.append(self._apply(config))
            done.set()

    def _apply(self, config: ServiceConfig | None) -> bool:
        if config is None:
            if self.config_path is None:
                log.warning("reload: no config file to read again")
                return False
            try:
                config = load_service_config(self.config_path)
            except AdplgError as exc:
                log.error("reload: %s; the running configuration is kept", exc)
                return False
        for key in RESTART_KEYS:
            if getattr(config, key) != getattr(self.config, key):
                log.warning("reload: %s changed; it applies at the next restart (the running value is kept)", key)
        kept = {key: getattr(self.config, key) for key in RESTART_KEYS}
        config = config.model_copy(update=kept)
        plans = config.plans(self.base)
        try:
            fresh = {name: self._camera(plan) for name, plan in plans.items()}  # rules files read before any change
        except AdplgError as exc:
            log.error("reload: %s; the running configuration is kept", exc)
            return False
        removed = [n for n in self.cameras if n not in plans]
        changed = [n for n in self.cameras if n in plans and (self.cameras[n].plan != plans[n] or
                                                              self.cameras[n].rules != fresh[n].rules)]
        added = [n for n in plans if n not in self.cameras]
        for name in removed + changed:
            self._remove(name)
        for name in changed + added:
            with self._lock:
                self.cameras[name] = fresh[name]
            self.sinks.camera_added(name)
            fresh[name].start()
        self.config = config
        self.say(f"reload: {len(added)} camera(s) added, {len(removed)} removed, {len(changed)} restarted, "
                 f"{len(self.cameras) - len(added) - len(changed)} unchanged")
        return True

    # ---- what the endpoints read
    def health(self) -> tuple[int, dict]:
        """``(HTTP status, body)`` of ``/health``: 503 while an enabled camera is reconnecting, down or failed."""
        with self._lock:
            cameras = dict(self.cameras)
        records = {name: camera.health() for name, camera in cameras.items()}
        down = [n for n, r in records.items() if r["enabled"] and r["state"] in DOWN_STATES]
        uptime = 0.0 if self.started_at is None else time.monotonic() - self.started_at
        body = {"status": "degraded" if down else "ok", "service": self.config.name, "uptime_s": round(uptime, 1),
                "down": down, "cameras": records}
        return (503 if down else 200), body

    def close(self) -> None:
        """Close every camera (open alerts end), then the outputs and the HTTP server; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for name in list(self.cameras):
                try:
                    self.cameras[name].close()
                except Exception:  # noqa: BLE001 - close the others
                    log.exception("camera %s: closing failed", name)
        finally:
            self.sinks.close()
            if self.http is not None:
                self.http.close()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._filter)
