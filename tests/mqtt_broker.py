"""A real MQTT broker for the tests: Debian's ``mosquitto`` on 127.0.0.1 and a free port, with a subscriber that
collects every message. Skipped when mosquitto is missing, except under CI (``CI`` set), where that fails.

    pytest_plugins = ["mqtt_broker"]          # in a test module: the fixtures below

    def test_x(mqtt_broker, mqtt_messages):   # a broker, and a subscriber to "#" on it
        sink = MqttSink(MqttConfig(host=mqtt_broker.host, port=mqtt_broker.port), "svc")
        message = mqtt_messages.wait_for(lambda m: m.topic == "adplg/events")

Or by hand: ``Broker(tmp_path).start()``, ``Subscriber(port)``; both have ``stop()`` / ``close()``."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from shared_helpers import free_port, missing_real_part

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")


def require_mosquitto() -> None:
    """Skip (fail under CI) when Debian's mosquitto broker or paho-mqtt is missing."""
    why = None
    if not MOSQUITTO.is_file():
        why = f"{MOSQUITTO} not found (Debian: apt-get install mosquitto)"
    else:
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            why = "paho-mqtt is not installed (pip install -e '.[test]')"
    if why is not None:
        missing_real_part(why)



class Broker:
    """mosquitto listening on 127.0.0.1:``port`` (a free one by default), anonymous clients allowed unless
    ``users`` (``{name: password}``) is given; its log in ``folder/mosquitto.log``."""

    def __init__(self, folder: Path, port: int | None = None, users: dict[str, str] | None = None):
        self.folder, self.port, self.users = Path(folder), port or free_port(), users
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> Broker:
        require_mosquitto()
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} {self.host}", "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # else root's mosquitto runs as user mosquitto, who cannot read our temp files
        if self.users:
            passwords = self.folder / "passwords"
            passwords.write_text("")
            for name, password in self.users.items():
                subprocess.run([str(MOSQUITTO_PASSWD), "-b", str(passwords), name, password], check=True,
                               capture_output=True, timeout=30)
            os.chmod(passwords, 0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self.log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(config)], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): "
                                   f"{(self.folder / 'mosquitto.log').read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.log.close()
        self.proc = None


@dataclass(kw_only=True)
class Message:
    """One received message: ``payload`` decoded as UTF-8, ``retain`` whether the broker sent it as retained."""

    topic: str
    payload: str
    retain: bool
    qos: int


class Subscriber:
    """A paho client subscribed to ``topics`` on the broker at ``port``, collecting every message in ``messages``
    (connected when the constructor returns)."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None, timeout_s: float = 10.0):
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-subscriber-{os.getpid()}-{id(self)}")
        if username:
            self.client.username_pw_set(username, password)

        def on_connect(client, userdata, flags, reason_code, properties=None):
            client.subscribe([(topic, 1) for topic in topics])

        def on_subscribe(client, userdata, mid, reason_codes, properties=None):
            subscribed.set()

        def on_message(client, userdata, message):
            with self._changed:
                self.messages.append(Message(topic=message.topic, payload=message.payload.decode("utf-8"),
                                             retain=bool(message.retain), qos=message.qos))
                self._changed.notify_all()

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not subscribed.wait(timeout_s):
            self.close()
            raise RuntimeError(f"the test subscriber could not subscribe on {host}:{port}")

    def wait_for(self, match: Callable[[Message], bool], timeout_s: float = 10.0, after: int = 0) -> Message:
        """The first message (from index ``after``) for which ``match`` is true, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((m for m in self.messages[after:] if match(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n".join(f"  {m.topic} {m.payload[:80]!r} retain={m.retain}" for m in self.messages[-30:])
                    raise AssertionError(f"no matching message within {timeout_s} s; the last ones:\n{seen}")
                self._changed.wait(left)

    def on(self, topic: str) -> list[Message]:
        """The messages received on ``topic``, in order."""
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_broker(tmp_path):
    """A mosquitto broker of its own for the test (anonymous clients allowed)."""
    broker = Broker(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_messages(mqtt_broker):
    """A subscriber to every topic (``#``) of ``mqtt_broker``."""
    subscriber = Subscriber(mqtt_broker.port)
    yield subscriber
    subscriber.close()
