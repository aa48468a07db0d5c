"""``adplg serve CONFIG.yaml``: the camera service (:mod:`adplg.service`): every camera of the config in one process
with one shared backbone, events to a JSON lines file, snapshots, clips, a webhook and MQTT, and ``/health``,
``/metrics``, ``/events`` over HTTP. See docs/deploy.md.

Signals: SIGTERM and Ctrl-C stop cleanly (open alerts get their ``end`` event, clips are closed, outputs flushed;
exit status 0); SIGHUP reloads the config file (cameras added, removed or changed without touching the others).
``--check`` validates the config (and the token and secret files it names) and exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

EXAMPLE_CONFIG = """example config (docs/deploy.md has a complete one):
  checkpoint: models/ucf-clip.safetensors
  weights: models/ViT-B-16.pt
  outputs: /var/lib/adplg
  cameras:
    porch: rtsp://viewer:secret@192.168.1.20/stream1
    garage: {source: rtsp://192.168.1.21/live, encode_every: 2, rules: {on_threshold: 0.7}}
"""


def add_parser(sub) -> None:
    """Add the ``serve`` subcommand to ``sub`` (the subparsers of ``adplg``)."""
    p = sub.add_parser("serve", help="the camera service: many cameras, one backbone, events, MQTT, health, metrics",
                       epilog=EXAMPLE_CONFIG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.yaml", help="the service's YAML config (defaults and a cameras: map)")
    p.add_argument("--check", action="store_true", help="validate the config and exit (0 when valid)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an outputs folder that another adplg command filled (default: refuse)")
    p.set_defaults(func=cmd_serve)


def check_lines(config, path: Path) -> list[str]:
    """``--check``: the checkpoint and weights the config names exist and its secrets can be read (an
    :class:`AdplgError` otherwise); one line per
    camera (its source redacted) and a verdict."""
    from adplg.errors import AdplgError
    from adplg.live.outputs import read_webhook_secret
    from adplg.service.config import resolve_path
    from adplg.service.http import read_token
    from adplg.service.redact import redact_url

    base = path.parent
    expected = {"checkpoint": "our checkpoint (.safetensors or its run directory)", "weights": "the backbone weights"}
    for key, what in expected.items():
        named = resolve_path(getattr(config, key), base)
        if named is not None and not Path(named).exists():
            raise AdplgError(f"{path}: {key} {named} does not exist; expected {what}")
    if config.http.enabled:
        read_token(config.http.token_env, resolve_path(config.http.token_file, base))
    if config.webhook is not None:
        read_webhook_secret(config.webhook.secret_env, resolve_path(config.webhook.secret_file, base))
    if config.mqtt is not None:
        from adplg.service.config import mqtt_config
        from adplg.service.mqtt import read_mqtt_password

        mqtt = mqtt_config(config.mqtt)
        read_mqtt_password(mqtt.model_copy(update={"password_file": resolve_path(mqtt.password_file, base)}))
    plans = config.plans(base)
    lines = [f"{name}: {redact_url(plan.source)}" + ("" if plan.enabled else " (disabled)")
             for name, plan in plans.items()]
    return [*lines, f"{path}: valid ({len(plans)} camera(s))"]


class _StoppedWhileLoading(BaseException):
    """SIGINT / SIGTERM while the model and backbone load: unwinds the load (nothing was written)."""


def cmd_serve(args: argparse.Namespace) -> int:
    """``adplg serve``: run the camera service until SIGTERM / Ctrl-C. Returns the exit code."""
    from adplg.service.config import load_service_config

    config = load_service_config(args.config)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.check:
        for line in check_lines(config, Path(args.config)):
            say(line)
        return 0
    from adplg.service.runner import Service

    service: list[Service] = []

    def on_stop(signum, _frame) -> None:
        if not service:
            raise _StoppedWhileLoading(signal.Signals(signum).name)
        service[0].request_stop()

    def on_reload(_signum, _frame) -> None:
        if service:
            service[0].request_reload()

    previous: dict = {}
    if threading.current_thread() is threading.main_thread():
        for sig, handler in ((signal.SIGINT, on_stop), (signal.SIGTERM, on_stop), (signal.SIGHUP, on_reload)):
            previous[sig] = signal.signal(sig, handler)
    try:
        try:
            service.append(Service(config, config_path=args.config, say=say, overwrite=args.overwrite))
        except _StoppedWhileLoading as exc:
            say(f"adplg serve: stopped by {exc} while loading the model; nothing was written")
            return 0
        service[0].run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("adplg serve: stopped; every open alert ended and the outputs flushed")
    return 0
