"""MQTT output of the camera service, with Home Assistant MQTT discovery: :class:`MqttSink` (an
:class:`~adplg.service.events.EventSink`) built from :class:`MqttConfig` (the service config's ``mqtt:`` section).

Topics (``<prefix>`` is ``MqttConfig.prefix``, ``<camera>`` the camera's name with characters other than letters,
digits, ``_`` and ``-`` written ``_``)::

    <prefix>/availability          online / offline (retained; the broker publishes offline as our last will when the
                                   connection drops without a goodbye)
    <prefix>/events                one JSON object per event: ServiceEvent.to_dict() (new / update / end /
                                   stream_down / stream_up; camera, event id, times, scores, snapshot and clip paths)
    <prefix>/<camera>/anomaly      ON while the camera is in an alert, else OFF (retained when retain_state)
    <prefix>/<camera>/score        the latest snippet score, e.g. 0.8731 (at most one every state_every_s seconds, and
                                   at every ON/OFF change; retained when retain_state)
    <prefix>/<camera>/availability online / offline: the camera's stream (offline from stream_down to stream_up, and
                                   once the camera is removed; retained)

Home Assistant discovery (``discovery``, on by default): per camera a ``binary_sensor`` (device class ``problem``:
the anomaly state) and a ``sensor`` (the score, state class ``measurement``), retained at
``<discovery_prefix>/binary_sensor/<node>/<camera>_anomaly/config`` and ``<discovery_prefix>/sensor/<node>/
<camera>_score/config`` (``<node>`` is the service's name, sanitized the same way), each with a ``unique_id``, both
availability topics (available only when both say online) and a ``device`` per camera. A removed camera's configs
are published empty (Home Assistant deletes its entities), and so are its retained states. The configs are published
again whenever the connection comes back and when Home Assistant says ``online`` on ``<discovery_prefix>/status``
(its birth message after a restart).

Never blocking, never raising: paho-mqtt's network thread (``loop_start``) connects, reconnects (backoff 1 s to
60 s) and sends; publishing only queues (QoS 1 and 2 messages wait for the connection, at most 1000 of them; score
messages are skipped while disconnected, the state being published again on reconnection). A failed publish is
logged (the first at once, then a count at most every minute) and counted in :meth:`MqttSink.stats`.

Credentials: ``username``, and the password from the environment variable ``password_env`` or the first line of
``password_file`` (read when the sink starts). The password itself is never in the config, so neither it nor its
repr can show it; it is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adplg.io import read_secret
from adplg.service.events import ServiceEvent

__all__ = ["MqttConfig", "MqttSink", "discovery_configs", "read_mqtt_password", "topic_name"]

log = logging.getLogger(__name__)

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
MAX_QUEUED = 1000  # QoS >= 1 messages paho keeps while disconnected
_TOPIC_WORD = re.compile(r"^[^#+\x00]+$")


def topic_name(name: str) -> str:
    """``name`` as one topic level and Home Assistant id: letters, digits, ``_`` and ``-`` kept, anything else
    ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(name)) or "_"


class MqttConfig(BaseModel):
    """The service's MQTT output (the ``mqtt:`` section of the service config)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = Field(..., min_length=1, description="the broker's host name or address")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (8883 is the usual one with TLS)")
    prefix: str = Field("adplg", description="first level of every topic: <prefix>/availability, <prefix>/events, "
                                             "<prefix>/<camera>/anomaly, score, availability")
    client_id: str | None = Field(None, description="the MQTT client id (default adplg-<service name>)")
    username: str | None = Field(None, description="user name for the broker (none: anonymous)")
    password_env: str | None = Field(None, description="environment variable holding the password (never put the "
                                                       "password itself in the config)")
    password_file: str | None = Field(None, description="file whose first line is the password")
    tls: bool = Field(False, description="connect with TLS, checking the broker's certificate against the system's "
                                         "certificate authorities")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs (a binary sensor and a "
                                              "score sensor per camera)")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")
    qos: int = Field(1, ge=0, le=2, description="QoS of the published messages")
    retain_state: bool = Field(True, description="retain each camera's anomaly state and score, so a new "
                                                 "subscriber sees them at once")
    state_every_s: float = Field(1.0, ge=0, description="at most one score message per camera every this many "
                                                        "seconds (0: every snippet score)")

    @model_validator(mode="after")
    def _checked(self) -> MqttConfig:
        for name in ("prefix", "discovery_prefix"):
            value = getattr(self, name)
            if not value or not _TOPIC_WORD.match(value) or value.startswith("/") or value.endswith("/"):
                raise ValueError(f"{name}: expected a topic without wildcards (+, #) and without a leading or "
                                 f"trailing /, got {value!r}")
        if self.password_env and self.password_file:
            raise ValueError("expected the password from password_env or password_file, got both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password (password_env / password_file) needs a username; expected username set")
        return self


def read_mqtt_password(config: MqttConfig) -> str | None:
    """The broker password named by ``config`` (environment variable or file), None without one; an
    :class:`AdplgError` names the variable or file when it is unset, empty or unreadable (never the password)."""
    return read_secret("the MQTT password", env=config.password_env, file=config.password_file,
                       env_parameter="mqtt.password_env", file_parameter="mqtt.password_file")

def discovery_configs(config: MqttConfig, node: str, camera: str) -> dict[str, dict[str, Any]]:
    """``{discovery topic: config}`` of one camera: its anomaly binary sensor and its score sensor (see the module
    docstring)."""
    from adplg._version import __version__

    node, cam = topic_name(node), topic_name(camera)
    base = f"{config.prefix}/{cam}"
    shared = {
        "availability": [{"topic": topic, "payload_available": ONLINE, "payload_not_available": OFFLINE}
                         for topic in (f"{config.prefix}/availability", f"{base}/availability")],
        "availability_mode": "all",
        "device": {"identifiers": [f"adplg_{node}_{cam}"], "name": f"{camera} anomaly detector",
                   "manufacturer": "adplg", "model": "ADPLG-VAD video anomaly detection", "sw_version": __version__},
        "origin": {"name": "adplg", "sw_version": __version__},
        "qos": config.qos,
    }
    return {
        f"{config.discovery_prefix}/binary_sensor/{node}/{cam}_anomaly/config": {
            "name": "Anomaly", "unique_id": f"adplg_{node}_{cam}_anomaly", "state_topic": f"{base}/anomaly",
            "payload_on": ON, "payload_off": OFF, "device_class": "problem", **shared},
        f"{config.discovery_prefix}/sensor/{node}/{cam}_score/config": {
            "name": "Anomaly score", "unique_id": f"adplg_{node}_{cam}_score", "state_topic": f"{base}/score",
            "state_class": "measurement", "suggested_display_precision": 3, "icon": "mdi:cctv", **shared},
    }


class MqttSink:
    """The events and states of the service on an MQTT broker (see the module docstring). Built at start-up (a bad
    password setting raises :class:`AdplgError` here); after that no method raises or blocks."""

    def __init__(self, config: MqttConfig, service_name: str):
        import paho.mqtt.client as mqtt

        self.config, self.service_name = config, str(service_name)
        self.node = topic_name(service_name)
        password = read_mqtt_password(config)
        self.published = self.failed = self.skipped = self.connects = self.connect_failures = 0
        self._said_down = False  # the current outage was logged
        self._cameras: dict[str, dict[str, Any]] = {}  # camera -> {"available", "anomaly", "score", "score_at"}
        self._lock = threading.RLock()
        self._warned_at: float | None = None
        self._warned_failed = 0
        self._closed = False
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=config.client_id or f"adplg-{self.node}", protocol=mqtt.MQTTv311)
        self._client.will_set(self._topic("availability"), OFFLINE, qos=config.qos, retain=True)
        if config.username:
            self._client.username_pw_set(config.username, password)
        if config.tls:
            self._client.tls_set()
        self._client.max_queued_messages_set(MAX_QUEUED)
        self._client.reconnect_delay_set(1, 60)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message
        self._client.connect_async(config.host, config.port, keepalive=30)
        self._client.loop_start()
        log.info("MQTT: connecting to %s:%d as %s (topics under %s/)", config.host, config.port,
                 config.client_id or f"adplg-{self.node}", config.prefix)

    def __repr__(self) -> str:
        return (f"MqttSink({self.config.host}:{self.config.port}, prefix={self.config.prefix!r}, "
                f"cameras={sorted(self._cameras)})")

    def _topic(self, *levels: str) -> str:
        return "/".join([self.config.prefix, *levels])

    # ------------------------------------------------------------------------------------------------ paho's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self._connection_problem(f"{self.config.host}:{self.config.port} refused the connection ({reason_code})")
            return
        self.connects += 1
        self._said_down = False
        log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        if self.config.discovery:
            client.subscribe(f"{self.config.discovery_prefix}/status", qos=self.config.qos)
        self._publish(self._topic("availability"), ONLINE, retain=True)
        with self._lock:
            for camera in list(self._cameras):
                self._announce(camera)

    def _on_connect_fail(self, client, userdata) -> None:
        self._connection_problem(f"cannot connect to {self.config.host}:{self.config.port}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self._closed:
            self._connection_problem(f"the connection to {self.config.host}:{self.config.port} was lost "
                                     f"({reason_code})")

    def _connection_problem(self, what: str) -> None:
        """Count a failed or lost connection; the first of each outage is logged (paho retries, 1 s to 60 s)."""
        self.connect_failures += 1
        if not self._said_down:
            self._said_down = True
            log.warning("MQTT: %s; retrying (1 s to 60 s apart) until it connects", what)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == f"{self.config.discovery_prefix}/status" and message.payload == b"online":
            log.info("MQTT: Home Assistant is online: discovery configs published again")
            with self._lock:
                for camera in list(self._cameras):
                    self._announce(camera)

    # ------------------------------------------------------------------------------------------------ publishing
    def _publish(self, topic: str, payload: str | bytes, retain: bool = False, when_connected: bool = False) -> None:
        """Queue one message (never raises); ``when_connected``: skip it while disconnected (scores)."""
        import paho.mqtt.client as mqtt

        if when_connected and not self._client.is_connected():
            self.skipped += 1
            return
        try:
            info = self._client.publish(topic, payload, qos=self.config.qos, retain=retain)
        except Exception as exc:  # noqa: BLE001 - a bad message must not reach the scoring loop
            self._failure(f"publishing on {topic} failed ({type(exc).__name__}: {exc})")
            return
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.config.qos > 0):
            self.published += 1  # sent, or queued until the connection is back
        else:
            self._failure(f"a message on {topic} was dropped ({mqtt.error_string(info.rc)})")

    def _failure(self, what: str) -> None:
        """Count and say a failure: the first at once, then a count at most every minute."""
        with self._lock:
            self.failed += 1
            now = time.monotonic()
            if self._warned_at is None:
                log.warning("MQTT: %s; further failures are counted (said at most every 60 s)", what)
            elif now - self._warned_at >= 60 and self.failed > self._warned_failed:
                log.warning("MQTT: %d failure(s) so far; last: %s", self.failed, what)
            else:
                return
            self._warned_at, self._warned_failed = now, self.failed

    def _announce(self, camera: str) -> None:
        """Publish a camera's discovery configs, availability and retained states (on add and on every connect)."""
        state = self._cameras[camera]
        if self.config.discovery:
            for topic, payload in discovery_configs(self.config, self.node, camera).items():
                self._publish(topic, json.dumps(payload), retain=True)
        cam = topic_name(camera)
        self._publish(self._topic(cam, "availability"), ONLINE if state["available"] else OFFLINE, retain=True)
        if state["anomaly"] is not None:
            self._publish(self._topic(cam, "anomaly"), ON if state["anomaly"] else OFF,
                          retain=self.config.retain_state)
        if state["score"] is not None:
            self._publish(self._topic(cam, "score"), f"{state['score']:.4f}", retain=self.config.retain_state,
                          when_connected=True)

    # ------------------------------------------------------------------------------------------------ EventSink
    def camera_added(self, camera: str) -> None:
        """Discovery configs (when on) and the camera's availability (online) and anomaly state (OFF)."""
        with self._lock:
            self._cameras[camera] = {"available": True, "anomaly": False, "score": None, "score_at": None}
            self._announce(camera)

    def camera_removed(self, camera: str) -> None:
        """The camera goes offline; its discovery configs and retained states are cleared (empty payloads)."""
        with self._lock:
            if self._cameras.pop(camera, None) is None:
                return
            cam = topic_name(camera)
            self._publish(self._topic(cam, "availability"), OFFLINE, retain=True)
            for level in ("anomaly", "score", "availability"):
                self._publish(self._topic(cam, level), b"", retain=True)
            if self.config.discovery:
                for topic in discovery_configs(self.config, self.node, camera):
                    self._publish(topic, b"", retain=True)

    def event(self, event: ServiceEvent) -> None:
        """The event as JSON on ``<prefix>/events``; ``new`` / ``end`` set the anomaly state, ``stream_down`` /
        ``stream_up`` the camera's availability."""
        with self._lock:
            try:
                payload = json.dumps(event.to_dict(), default=str)
            except Exception as exc:  # noqa: BLE001
                self._failure(f"an event could not be written as JSON ({type(exc).__name__}: {exc})")
                return
            self._publish(self._topic("events"), payload)
            state = self._cameras.get(event.camera)
            if state is None:
                return
            if event.kind in ("stream_down", "stream_up"):
                state["available"] = event.kind == "stream_up"
                self._publish(self._topic(topic_name(event.camera), "availability"),
                              ONLINE if state["available"] else OFFLINE, retain=True)
            elif event.kind in ("new", "end"):
                self._set_anomaly(event.camera, state, event.kind == "new")

    def _set_anomaly(self, camera: str, state: dict, anomalous: bool) -> bool:
        """Publish ON/OFF when it changed; returns whether it did."""
        if state["anomaly"] == anomalous:
            return False
        state["anomaly"] = anomalous
        self._publish(self._topic(topic_name(camera), "anomaly"), ON if anomalous else OFF,
                      retain=self.config.retain_state)
        return True

    def state(self, camera: str, anomalous: bool, score: float) -> None:
        """ON/OFF when it changes; the score at most every ``state_every_s`` seconds (and at each change)."""
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                return
            changed = self._set_anomaly(camera, state, bool(anomalous))
            state["score"] = float(score)
            now = time.monotonic()
            if changed or state["score_at"] is None or now - state["score_at"] >= self.config.state_every_s:
                state["score_at"] = now
                self._publish(self._topic(topic_name(camera), "score"), f"{float(score):.4f}",
                              retain=self.config.retain_state, when_connected=True)

    def stats(self) -> dict[str, Any]:
        """Counters: messages ``published`` (sent or queued), ``failed`` (dropped), ``skipped`` (scores while
        disconnected), ``connects`` and ``connect_failures`` (refused, failed or lost connections), and whether it is
        ``connected`` now."""
        return {"published": self.published, "failed": self.failed, "skipped": self.skipped,
                "connects": self.connects, "connect_failures": self.connect_failures,
                "connected": self._client.is_connected()}

    def close(self, timeout_s: float = 5.0) -> None:
        """Say offline (the service and its cameras; retained), wait up to ``timeout_s`` for it to be sent, then
        disconnect."""
        if self._closed:
            return
        try:
            with self._lock:
                for camera in list(self._cameras):
                    self._publish(self._topic(topic_name(camera), "availability"), OFFLINE, retain=True)
                info = self._client.publish(self._topic("availability"), OFFLINE, qos=self.config.qos, retain=True)
            if self._client.is_connected():
                info.wait_for_publish(timeout_s)
        except Exception as exc:  # noqa: BLE001 - closing goes on whatever happened
            self._failure(f"saying offline failed ({type(exc).__name__}: {exc})")
        finally:
            self._closed = True
            self._client.disconnect()
            self._client.loop_stop()
        log.info("MQTT: closed (%s)", ", ".join(f"{k} {v}" for k, v in self.stats().items()))
