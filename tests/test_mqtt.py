"""The MQTT output of the camera service (service/mqtt.py, issue 28 item 3) against a real broker (Debian's
mosquitto, tests/mqtt_broker.py): availability and last will, events, retained anomaly state, rate-limited scores,
camera availability, Home Assistant discovery payloads, removal, a broker restart, and credentials that never reach
the logs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mqtt_broker import Broker, Subscriber, require_mosquitto
from pydantic import ValidationError
from shared_helpers import free_port

from adplg.errors import AdplgError
from adplg.service.events import ServiceEvent
from adplg.service.mqtt import MqttConfig, MqttSink, read_mqtt_password

pytest_plugins = ["mqtt_broker"]  # the mqtt_broker and mqtt_messages fixtures

SRC = Path(__file__).resolve().parents[1] / "src"


def _payload(messages: Subscriber, topic: str, after: int = 0, timeout_s: float = 10.0) -> str:
    return messages.wait_for(lambda m: m.topic == topic, timeout_s, after=after).payload


def _alert(kind: str, camera: str = "door", **fields) -> ServiceEvent:
    return ServiceEvent(kind=kind, camera=camera, event_id=f"{camera}-20260101T120000-1", start_s=12.5,
                        start_wall="2026-01-01T12:00:00Z", peak_score=0.91, mean_score=0.8,
                        snapshot="/srv/adplg/snapshots/door-1.jpg", clip="/srv/adplg/clips/door-1.mp4", **fields)


def test_events_states_availability_and_home_assistant_discovery(mqtt_broker, mqtt_messages):
    config = MqttConfig(host=mqtt_broker.host, port=mqtt_broker.port, state_every_s=3600)
    sink = MqttSink(config, "home")
    try:
        sink.camera_added("door")
        sink.camera_added("back yard")  # a name with a space: its topics say back_yard
        assert _payload(mqtt_messages, "adplg/availability") == "online"
        assert _payload(mqtt_messages, "adplg/door/availability") == "online"
        assert _payload(mqtt_messages, "adplg/back_yard/anomaly") == "OFF"

        # Home Assistant discovery: a binary sensor and a score sensor per camera, valid and consistent
        for camera, cam in (("door", "door"), ("back yard", "back_yard")):
            binary = mqtt_messages.wait_for(lambda m, c=cam: m.topic == f"homeassistant/binary_sensor/home/"
                                                                         f"{c}_anomaly/config")
            sensor = mqtt_messages.wait_for(lambda m, c=cam: m.topic == f"homeassistant/sensor/home/{c}_score/config")
            b, s = json.loads(binary.payload), json.loads(sensor.payload)
            for entity in (b, s):
                assert {"name", "unique_id", "state_topic", "availability", "device"} <= set(entity)
                assert entity["device"]["identifiers"] == [f"adplg_home_{cam}"] and camera in entity["device"]["name"]
                assert [a["topic"] for a in entity["availability"]] == ["adplg/availability",
                                                                        f"adplg/{cam}/availability"]
                assert entity["availability_mode"] == "all"
                for a in entity["availability"]:  # what we publish there is what HA reads as available
                    assert _payload(mqtt_messages, a["topic"]) == a["payload_available"]
                    assert a["payload_not_available"] == "offline"
            assert b["unique_id"] != s["unique_id"]
            assert b["device_class"] == "problem" and b["state_topic"] == f"adplg/{cam}/anomaly"
            assert {b["payload_on"], b["payload_off"]} == {"ON", "OFF"}
            assert _payload(mqtt_messages, b["state_topic"]) == b["payload_off"]
            assert s["state_class"] == "measurement" and s["state_topic"] == f"adplg/{cam}/score"

        # an alert: the event on <prefix>/events, the anomaly state ON (retained), scores at most every 3600 s
        mark = len(mqtt_messages.messages)
        sink.event(_alert("new"))
        event = json.loads(_payload(mqtt_messages, "adplg/events", after=mark))
        assert event == _alert("new").to_dict() and event["end_s"] is None
        # (an OFF of the camera's start may still be in flight, or come again as the retained copy at subscription)
        assert mqtt_messages.wait_for(lambda m: m.topic == "adplg/door/anomaly" and m.payload == "ON", after=mark)
        sink.state("door", True, 0.9123)
        sink.state("door", True, 0.95)  # within state_every_s: not sent
        sink.state("door", False, 0.2)  # the state changed: sent at once
        mqtt_messages.wait_for(lambda m: m.topic == "adplg/door/anomaly" and m.payload == "OFF", after=mark)
        time.sleep(0.3)
        assert [m.payload for m in mqtt_messages.on("adplg/door/score")] == ["0.9123", "0.2000"]
        sink.event(_alert("end", end_s=20.0, end_wall="2026-01-01T12:00:08Z"))
        end = mqtt_messages.wait_for(lambda m: m.topic == "adplg/events" and '"end"' in m.payload, after=mark)
        assert json.loads(end.payload)["end_s"] == 20.0 and json.loads(end.payload)["peak_score"] == 0.91

        # stream down / up: the camera's availability, and the events
        mark = len(mqtt_messages.messages)
        sink.event(ServiceEvent(kind="stream_down", camera="door", start_s=30.0))
        assert _payload(mqtt_messages, "adplg/door/availability", after=mark) == "offline"
        sink.event(ServiceEvent(kind="stream_up", camera="door", start_s=30.0, end_s=34.5, outage_s=4.5))
        mqtt_messages.wait_for(lambda m: m.topic == "adplg/door/availability" and m.payload == "online", after=mark)
        kinds = [json.loads(m.payload)["kind"] for m in mqtt_messages.on("adplg/events")]
        assert kinds == ["new", "end", "stream_down", "stream_up"]

        # a late subscriber sees the retained state at once
        late = Subscriber(mqtt_broker.port, topics=("adplg/#",))
        try:
            retained = {m.topic: m.payload for m in [late.wait_for(lambda m: m.topic == "adplg/door/score")]}
            retained.update({m.topic: m.payload for m in late.messages if m.retain})
            assert retained["adplg/door/anomaly"] == "OFF" and retained["adplg/door/score"] == "0.2000"
            assert retained["adplg/availability"] == "online" and "adplg/events" not in retained
        finally:
            late.close()

        # removing a camera: empty retained configs (HA deletes the entities) and states cleared
        mark = len(mqtt_messages.messages)
        sink.camera_removed("back yard")
        mqtt_messages.wait_for(lambda m: m.topic == "homeassistant/sensor/home/back_yard_score/config"
                               and m.payload == "", after=mark)
        mqtt_messages.wait_for(lambda m: m.topic == "homeassistant/binary_sensor/home/back_yard_anomaly/config"
                               and m.payload == "", after=mark)
        late = Subscriber(mqtt_broker.port, topics=("homeassistant/#", "adplg/#"))
        try:
            late.wait_for(lambda m: m.topic == "homeassistant/sensor/home/door_score/config")
            time.sleep(0.3)
            assert not [m.topic for m in late.messages if "back_yard" in m.topic]
        finally:
            late.close()
    finally:
        mark = len(mqtt_messages.messages)
        sink.close()
    assert _payload(mqtt_messages, "adplg/availability", after=mark) == "offline"
    assert sink.stats()["failed"] == 0 and sink.stats()["connects"] == 1 and sink.stats()["connect_failures"] == 0


def test_the_last_will_says_offline_when_the_service_dies(mqtt_broker, mqtt_messages):
    """A service killed with SIGKILL says no goodbye: the broker publishes our last will, retained."""
    script = ("import sys, time\n"
              "from adplg.service.mqtt import MqttConfig, MqttSink\n"
              f"sink = MqttSink(MqttConfig(host='127.0.0.1', port={mqtt_broker.port}, prefix='cams'), 'svc')\n"
              "sink.camera_added('door')\n"
              "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        mqtt_messages.wait_for(lambda m: m.topic == "cams/availability" and m.payload == "online", timeout_s=60)
        mark = len(mqtt_messages.messages)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _payload(mqtt_messages, "cams/availability", after=mark) == "offline"
    finally:
        proc.kill()
        proc.wait(10)
    late = Subscriber(mqtt_broker.port, topics=("cams/availability",))
    try:
        assert late.wait_for(lambda m: True).payload == "offline"  # retained
    finally:
        late.close()


def test_the_password_comes_from_the_environment_or_a_file_and_never_reaches_the_logs(tmp_path, monkeypatch,
                                                                                       caplog):
    require_mosquitto()
    secret = "pw-7f3a-never-logged"
    broker = Broker(tmp_path / "broker", users={"cam": secret}).start()
    try:
        monkeypatch.setenv("ADPLG_TEST_MQTT_PASSWORD", secret)
        config = MqttConfig(host=broker.host, port=broker.port, username="cam", password_env="ADPLG_TEST_MQTT_PASSWORD")
        (tmp_path / "password").write_text(secret + "\n")
        from_file = MqttConfig(host=broker.host, port=broker.port, username="cam",
                               password_file=str(tmp_path / "password"), client_id="other")
        wrong = MqttConfig(host=broker.host, port=broker.port, username="cam", password_env="ADPLG_TEST_MQTT_WRONG",
                           prefix="wrong", client_id="wrong")
        monkeypatch.setenv("ADPLG_TEST_MQTT_WRONG", "not-the-password")
        messages = Subscriber(broker.port, username="cam", password=secret)
        with caplog.at_level(logging.DEBUG):
            sinks = [MqttSink(c, "home") for c in (config, from_file, wrong)]
            try:
                for sink in sinks:
                    sink.camera_added("door")
                messages.wait_for(lambda m: m.topic == "adplg/door/availability" and m.payload == "online")
                deadline = time.monotonic() + 10
                while sinks[2].stats()["connect_failures"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert sinks[0].stats()["connects"] == 1 and sinks[1].stats()["connects"] == 1
                assert sinks[2].stats()["connects"] == 0 and sinks[2].stats()["connect_failures"] >= 1  # not raised
                assert not messages.on("wrong/availability")
            finally:
                for sink in sinks:
                    sink.close()
                messages.close()
        # the wrong password is said once, as a refusal or, when the broker closes first, a lost connection
        assert "retrying" in caplog.text and "connected to" in caplog.text
        shown = caplog.text + "".join(repr(x) for x in (config, from_file, *sinks)) + str(config.model_dump())
        assert secret not in shown and "not-the-password" not in shown
    finally:
        broker.stop()


def test_a_broker_restart_is_reconnected_and_the_state_published_again(tmp_path):
    require_mosquitto()
    broker = Broker(tmp_path / "broker").start()
    sink = MqttSink(MqttConfig(host=broker.host, port=broker.port, state_every_s=0), "home")
    try:
        sink.camera_added("door")
        first = Subscriber(broker.port)
        first.wait_for(lambda m: m.topic == "adplg/door/anomaly")
        first.close()
        broker.stop()  # the retained messages go with it (no persistence)
        started = time.monotonic()
        sink.event(_alert("new"))  # queued (QoS 1), the state kept: nothing raises, nothing blocks
        sink.state("door", True, 0.75)  # a score while disconnected: skipped
        assert time.monotonic() - started < 0.5
        broker.start()
        again = Subscriber(broker.port)
        try:
            again.wait_for(lambda m: m.topic == "adplg/door/anomaly" and m.payload == "ON", timeout_s=30)
            again.wait_for(lambda m: m.topic == "adplg/door/score" and m.payload == "0.7500")
            again.wait_for(lambda m: m.topic == "adplg/availability" and m.payload == "online")
            again.wait_for(lambda m: m.topic == "homeassistant/sensor/home/door_score/config")
        finally:
            again.close()
        stats = sink.stats()
        assert stats["connects"] == 2 and stats["skipped"] >= 1 and stats["connect_failures"] >= 1
    finally:
        sink.close()
        broker.stop()


def test_nothing_raises_or_blocks_without_a_broker(caplog):
    require_mosquitto()
    port = free_port()  # nobody listens there
    sink = MqttSink(MqttConfig(host="127.0.0.1", port=port, qos=0), "home")
    try:
        started = time.monotonic()
        sink.camera_added("door")
        for k in range(200):
            sink.event(_alert("new"))
            sink.state("door", k % 2 == 0, 0.5)
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 10
        while "cannot connect" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cannot connect" in caplog.text and sink.stats()["failed"] >= 200  # QoS 0 while down: dropped
    finally:
        sink.close()


def test_bad_mqtt_settings_are_refused_with_the_key_named(monkeypatch, tmp_path):
    with pytest.raises(ValidationError, match="extra"):
        MqttConfig(host="broker", passwd="x")
    with pytest.raises(ValidationError, match="got both"):
        MqttConfig(host="broker", username="u", password_env="A", password_file="b")
    with pytest.raises(ValidationError, match="needs a username"):
        MqttConfig(host="broker", password_env="A")
    with pytest.raises(ValidationError, match="wildcards"):
        MqttConfig(host="broker", prefix="cams/#")
    with pytest.raises(ValidationError, match="less than or equal to 2"):
        MqttConfig(host="broker", qos=3)
    monkeypatch.delenv("ADPLG_TEST_UNSET", raising=False)
    with pytest.raises(AdplgError, match="ADPLG_TEST_UNSET is not set") as info:
        read_mqtt_password(MqttConfig(host="b", username="u", password_env="ADPLG_TEST_UNSET"))
    assert info.value.parameter == "mqtt.password_env"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AdplgError, match="empty line"):
        read_mqtt_password(MqttConfig(host="b", username="u", password_file=str(tmp_path / "empty")))
    with pytest.raises(AdplgError, match="cannot be read"):
        read_mqtt_password(MqttConfig(host="b", username="u", password_file=str(tmp_path / "missing")))
