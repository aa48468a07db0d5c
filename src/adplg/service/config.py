"""The camera service's configuration: one YAML file with the defaults (checkpoint, backbone, device, alert rules,
outputs, HTTP, MQTT, clips) and a ``cameras:`` map of camera name -> source (and per-camera overrides).

Validated with pydantic (unknown keys are errors, with the closest key suggested; a wrong key of a camera names the
camera). Relative paths (checkpoint, weights, alert rules files, outputs, token files, file sources) are relative to
the config file's folder, so a systemd unit can start the service from anywhere. A camera is a source string or a
mapping::

    cameras:
      porch: rtsp://user:pass@192.168.1.20/stream1
      garage: {source: rtsp://192.168.1.21/live, encode_every: 2, rules: {on_threshold: 0.7}}
      attic: {source: /dev/video0, enabled: false}

:meth:`ServiceConfig.plans` resolves each camera's effective settings (:class:`CameraPlan`: the defaults with its
overrides); a reload compares plans to know which cameras changed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adplg.errors import AdplgError

__all__ = ["CameraConfig", "CameraPlan", "ClipsConfig", "HttpConfig", "ReaderConfig", "RulesConfig", "ServiceConfig",
           "WebhookConfig", "is_loopback", "load_service_config", "parse_service_config"]

CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # MQTT topics, file names and event ids use it
LISTING = "docs/deploy.md lists every key"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class RulesConfig(_Section):
    """Alert rules that override the checkpoint's (or the alerts file's) one value at a time."""

    on_threshold: float | None = Field(None, ge=0, le=1, description="alert start threshold")
    off_threshold: float | None = Field(None, ge=0, le=1, description="alert end threshold (hysteresis)")
    min_duration_s: float | None = Field(None, ge=0, description="drop alerts shorter than this (seconds)")
    merge_gap_s: float | None = Field(None, ge=0, description="merge alerts at most this far apart (seconds)")

    def merged(self, other: RulesConfig | None) -> RulesConfig:
        """These rules with every value ``other`` sets replaced."""
        if other is None:
            return self
        return self.model_copy(update={k: v for k, v in other.model_dump().items() if v is not None})


class ReaderConfig(_Section):
    """How each camera is read (see :mod:`adplg.live.sources`)."""

    queue_frames: int = Field(128, ge=1, description="frames buffered per camera; when full the oldest are dropped")
    max_retries: int = Field(5, ge=0, description="failed reconnects in a row before a camera is reported down")
    stall_timeout_s: float = Field(10.0, gt=0, description="seconds without a frame before reconnecting")
    backoff_s: float = Field(0.5, ge=0, description="first reconnect wait (doubled per failure)")
    backoff_max_s: float = Field(30.0, ge=0, description="longest reconnect wait")
    retry_down_s: float = Field(60.0, gt=0, description="a camera reported down is tried again after this long")


class HttpConfig(_Section):
    """The HTTP endpoints /health, /metrics and /events."""

    enabled: bool = Field(True, description="serve /health, /metrics and /events")
    host: str = Field("127.0.0.1", description="address to bind; beyond loopback a bearer token is required")
    port: int = Field(8754, ge=0, le=65535, description="port (0: any free port)")
    token_env: str | None = Field(None, description="environment variable holding the bearer token")
    token_file: str | None = Field(None, description="file whose first line is the bearer token")
    recent_events: int = Field(200, ge=1, description="events kept for /events")


class WebhookConfig(_Section):
    """Every event POSTed as JSON (live/outputs WebhookPoster: background thread, retries, never blocks)."""

    url: str = Field(description="http:// or https:// URL")
    secret_env: str | None = Field(None, description="environment variable of the HMAC signing secret")
    secret_file: str | None = Field(None, description="file whose first line is the HMAC signing secret")


class ClipsConfig(_Section):
    """An MP4 clip of each alert, remuxed from the stream's packets (service/clips.py)."""

    enabled: bool = Field(False, description="record a clip of each alert")
    pre_s: float = Field(5.0, ge=0, description="seconds kept before the alert's start")
    post_s: float = Field(5.0, ge=0, description="seconds kept after the alert's end")
    max_age_s: float | None = Field(7 * 86400.0, gt=0, description="clips older than this are deleted (null: kept)")
    max_total_mb: float | None = Field(2048.0, gt=0, description="oldest clips deleted beyond this total (MB)")
    prune_every_s: float = Field(300.0, gt=0, description="how often the retention rules run")


class CameraConfig(_Section):
    """One camera: its source and the defaults it overrides."""

    source: str = Field(description="rtsp:// / http(s):// URL, /dev/videoN, or a video file")
    enabled: bool = Field(True, description="false: configured but not read")
    alerts: str | None = Field(None, description="alert rules YAML of this camera (replaces the default file)")
    rules: RulesConfig | None = Field(None, description="single alert rules for this camera")
    encode_every: int | None = Field(None, ge=1, description="backbone on every k-th snippet (default: the service's)")
    realtime: bool | None = Field(None, description="a file played at its frame rate (default: the service's)")


class ServiceConfig(_Section):
    """The whole service (see the module docstring)."""

    name: str = Field("adplg", description="service name (MQTT client and Home Assistant device)")
    checkpoint: str = Field(description="our .safetensors checkpoint or its run directory")
    weights: str | None = Field(None, description="backbone weights (rgb_imagenet.pt or ViT-B-16.pt)")
    backbone: Literal["i3d", "clip"] | None = Field(None, description="default: from the checkpoint's feature size")
    crops: int = Field(1, description="crop views per snippet (1, 5 or 10)")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto")
    precision: Literal["fp32", "tf32", "bf16"] | None = Field(None, description="default: the checkpoint's")
    window: int | None = Field(None, ge=1, description="snippets of context a bidirectional model sees (default: "
                                                        "the model's: 256; a causal model always uses its receptive "
                                                        "field)")
    delay: int | None = Field(None, ge=0, description="look-ahead snippets (default: the model's)")
    encode_every: int = Field(1, ge=1, description="backbone on every k-th snippet (frame skipping)")
    batch_snippets: int = Field(8, ge=1, description="most snippets in one backbone forward (all cameras)")
    realtime: bool = Field(False, description="play file sources at their frame rate")
    alerts: str | None = Field(None, description="alert rules YAML (default: the one beside the checkpoint)")
    rules: RulesConfig = Field(RulesConfig(), description="single alert rules over the file's")
    outputs: str = Field("adplg-serve", description="folder of events.jsonl, snapshots/ and clips/")
    snapshots: bool = Field(True, description="a JPEG of each alert's first frame")
    reader: ReaderConfig = Field(ReaderConfig(), description="camera reading and reconnection")
    http: HttpConfig = Field(HttpConfig(), description="HTTP endpoints")
    webhook: WebhookConfig | None = Field(None, description="POST every event to a URL")
    mqtt: dict[str, Any] | None = Field(None, description="MQTT broker and Home Assistant discovery (MqttConfig)")
    clips: ClipsConfig = Field(ClipsConfig(), description="alert clips")
    cameras: dict[str, CameraConfig] = Field(description="camera name -> source or {source, overrides}")

    @field_validator("cameras", mode="before")
    @classmethod
    def _sources_as_cameras(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"source": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> ServiceConfig:
        bad = [n for n in self.cameras if not CAMERA_NAME.match(str(n))]
        if bad:
            raise ValueError(f"cameras: expected names of letters, digits, '_' and '-' (1-64, used in MQTT topics and "
                             f"file names), got {bad[0]!r}")
        if self.crops not in (1, 5, 10):
            raise ValueError(f"crops: expected 1, 5 or 10, got {self.crops}")
        if self.http.enabled and not is_loopback(self.http.host) and not (self.http.token_env or self.http.token_file):
            raise ValueError(f"http.host {self.http.host} is reachable beyond this machine: expected a bearer token "
                             "(http.token_env or http.token_file), got neither")
        if self.http.token_env and self.http.token_file:
            raise ValueError("http: expected the token from token_env or token_file, got both")
        if self.delay is not None and self.window is not None and self.delay > self.window - 1:
            raise ValueError(f"delay: expected <= window - 1 = {self.window - 1}, got {self.delay}")
        return self

    def plans(self, base: Path | None = None) -> dict[str, CameraPlan]:
        """Every camera's effective settings, paths resolved against ``base`` (the config file's folder)."""
        return {name: CameraPlan(name=name, source=resolve_source(cam.source, base), enabled=cam.enabled,
                                 alerts=resolve_path(cam.alerts or self.alerts, base),
                                 rules=self.rules.merged(cam.rules),
                                 encode_every=cam.encode_every or self.encode_every,
                                 realtime=self.realtime if cam.realtime is None else cam.realtime, reader=self.reader)
                for name, cam in self.cameras.items()}


@dataclass(frozen=True, kw_only=True)
class CameraPlan:
    """One camera's effective settings: the service's defaults with the camera's overrides. Equal plans: nothing
    about the camera changed (a reload keeps it running)."""

    name: str
    source: str
    enabled: bool
    alerts: str | None
    rules: RulesConfig
    encode_every: int
    realtime: bool
    reader: ReaderConfig


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_path(path: str | None, base: Path | None) -> str | None:
    """``path`` relative to ``base`` (the config file's folder) when relative; None stays None."""
    if path is None or base is None or Path(path).is_absolute():
        return path
    return str(base / path)


def resolve_source(source: str, base: Path | None) -> str:
    """A file source relative to ``base``; URLs and devices unchanged."""
    from adplg.live.sources import is_url

    if is_url(source) or source.startswith("/dev/") or "://" in source:
        return source
    return resolve_path(source, base) or source


def _error_lines(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per problem: the key, what was expected and what was given; an unknown key with the closest one.
    A problem inside ``cameras.<name>`` starts with the camera's name."""
    from adplg.config import unknown_key_message

    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        camera = loc[1] if len(loc) >= 3 and loc[0] == "cameras" and not prefix else None
        where = prefix + ".".join(loc)
        if err["type"] == "extra_forbidden":
            if camera is not None:
                text = unknown_key_message(".".join(loc[2:]), CameraConfig, LISTING)
                text = text.replace("key ", f"key cameras.{camera}.", 1).replace("mean ", f"mean cameras.{camera}.")
            else:
                text = unknown_key_message(".".join(loc), model, LISTING)
                text = text.replace("key ", f"key {prefix}", 1).replace("mean ", f"mean {prefix}") if prefix else text
        elif err["type"] == "value_error":
            text = err["msg"].removeprefix("Value error, ")
            text = text if not where or text.startswith(where.split(".")[0]) else f"{where}: {text}"
        elif isinstance(err.get("input"), dict) or err["type"] == "missing":
            text = f"{where}: {err['msg']}"
        else:
            text = f"{where}: {err['msg']} (got {err.get('input')!r})"
        lines.append(f"camera {camera!r}: {text}" if camera is not None else text)
    return lines


def parse_service_config(data: Any, source: str = "service config") -> ServiceConfig:
    """Validate the mapping ``data`` (``source`` names it in errors); the ``mqtt:`` section is checked against
    :class:`adplg.service.mqtt.MqttConfig`. Raises :class:`AdplgError` listing every problem."""
    if not isinstance(data, dict):
        raise AdplgError(f"{source}: expected a mapping with checkpoint and cameras, got a {type(data).__name__}")
    try:
        config = ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise AdplgError(f"invalid {source}:\n  " + "\n  ".join(_error_lines(exc, ServiceConfig))) from None
    if config.mqtt is not None:
        mqtt_config(config.mqtt, source)
    return config


def mqtt_config(section: dict[str, Any], source: str = "service config"):
    """The ``mqtt:`` section as :class:`adplg.service.mqtt.MqttConfig` (imported here: paho-mqtt is optional)."""
    try:
        from adplg.service.mqtt import MqttConfig
    except ImportError as exc:
        raise AdplgError(f"{source}: mqtt needs the MQTT client ({exc}); install adplg[serve]",
                         parameter="mqtt") from None
    try:
        return MqttConfig.model_validate(section)
    except ValidationError as exc:
        raise AdplgError(f"invalid {source}:\n  " + "\n  ".join(_error_lines(exc, MqttConfig, "mqtt."))) from None


def load_service_config(path: str | Path) -> ServiceConfig:
    """The :class:`ServiceConfig` of the YAML file ``path`` (errors name the file)."""
    from adplg.config import read_config_file

    return parse_service_config(read_config_file(path), f"service config {path}")
