"""The demo's parts, each on its own: the verifying webhook receiver (against signatures
made by the ``standardwebhooks`` package and by our outbox), the simulator's spikes, the
history seeded straight into a real SQLite store, and the demo config."""

from __future__ import annotations

import http.client
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from telemetry_cli.demo import prepare
from telemetry_cli.demo.receiver import InvalidSignature, Receiver, verify
from telemetry_core.alerts.delivery import sign
from telemetry_core.alerts.secrets import decode_secret
from telemetry_core.config import load_config
from telemetry_core.fleet import Fleet, Spikes
from telemetry_core.store import open_store
from telemetry_core.timeutil import NS

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = decode_secret(SECRET, "TEST")
BODY = json.dumps(
    {
        "type": "alert.firing",
        "timestamp": "2026-11-24T07:00:00Z",
        "data": {
            "rule": "power-high", "severity": "critical", "measurement": "energy",
            "field": "power_w", "site_id": "site-a", "device_id": "meter-2", "value": 7012.5,
        },
    }
).encode()  # fmt: skip


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_verify_accepts_what_standardwebhooks_and_our_outbox_sign():
    now = int(time.time())
    theirs = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    assert verify(KEY, headers("msg_1", now, theirs), BODY)["data"]["value"] == 7012.5
    ours = sign(KEY, "msg_2", now, BODY)
    assert verify(KEY, headers("msg_2", now, ours), BODY)["type"] == "alert.firing"
    # key rotation: several signatures, one of them ours
    rotated = f"v1,{'A' * 44} {ours}"
    assert verify(KEY, {k.title(): v for k, v in headers("msg_2", now, rotated).items()}, BODY)


@pytest.mark.parametrize(
    "change",
    ["body", "key", "id", "old", "future", "missing", "version"],
)
def test_verify_refuses(change):
    now = int(time.time())
    msg_id, stamp, body, key = "msg_1", now, BODY, KEY
    signature = sign(KEY, msg_id, stamp, body)
    if change == "body":
        body = body.replace(b"7012.5", b"1.0")
    elif change == "key":
        key = b"another key"
    elif change == "id":
        msg_id = "msg_other"
    elif change in ("old", "future"):
        stamp = now + (-301 if change == "old" else 301)
        signature = sign(KEY, msg_id, stamp, body)
    elif change == "version":
        signature = signature.replace("v1,", "v1a,")
    hdrs = headers(msg_id, stamp, signature)
    if change == "missing":
        del hdrs["webhook-signature"]
    with pytest.raises(InvalidSignature):
        verify(key, hdrs, body)


def post(port: int, hdrs: dict[str, str], body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/hooks/telemetry", body=body, headers=hdrs)
        return conn.getresponse().status
    finally:
        conn.close()


def test_receiver_prints_each_verified_delivery_once_and_refuses_forgeries():
    printed: list[str] = []
    receiver = Receiver(KEY, 0, printed.append).start()
    try:
        now = int(time.time())
        good = headers("msg_1", now, sign(KEY, "msg_1", now, BODY))
        assert post(receiver.port, good, BODY) == 204
        assert post(receiver.port, good, BODY) == 204  # a retry: acknowledged, not repeated
        forged = headers("msg_2", now, sign(b"not our key", "msg_2", now, BODY))
        assert post(receiver.port, forged, BODY) == 401
    finally:
        receiver.stop()
    assert receiver.received == 1
    assert printed[0].startswith("ALERT firing   critical power-high: energy.power_w = 7012.5")
    assert "site-a/meter-2" in printed[0] and "signature verified" in printed[0]
    assert printed[1].startswith("webhook refused (401)")
    assert len(printed) == 2


def test_spikes_take_turns_and_only_spikes_cross_the_threshold():
    start = 1_795_000_000 * NS
    spikes = Spikes(start, every_s=120)
    assert spikes.meter(start + 14 * NS, 9) is None  # the first starts 15 s in
    assert spikes.meter(start + 15 * NS, 9) == 0
    assert spikes.meter(start + 26 * NS, 9) is None  # 10 s long
    assert spikes.meter(start + 136 * NS, 9) == 1  # the next meter, two minutes later
    assert spikes.meter(start + (15 + 9 * 120) * NS, 9) == 0  # round the meters again

    fleet = Fleet(3, 12, seed=1)
    messages = fleet.messages(start, 1.8, spikes=spikes)
    high: dict[str, list[float]] = {}
    for _ in range(36 * 200):  # 6 minutes of simulated time
        msg = next(messages)
        if msg.subject.startswith("iot.energy."):
            payload = json.loads(msg.payload)
            if payload["power_w"] > 5000:
                seconds = (payload["timestamp"] - start) / NS
                high.setdefault(msg.subject, []).append(seconds)
    meters = [m.subject for m in fleet.meters]
    assert sorted(high) == sorted(meters[:3])  # spikes at 15 s, 135 s, 255 s
    for k, subject in enumerate(meters[:3]):
        assert all(15 + 120 * k <= s < 25 + 120 * k for s in high[subject]), high[subject]

    quiet = Fleet(3, 12, seed=1).messages(start, 1.8)  # no spikes: never above 5 kW
    powers = [
        json.loads(m.payload)["power_w"]
        for m in (next(quiet) for _ in range(36 * 2000))
        if m.subject.startswith("iot.energy.")
    ]
    assert max(powers) < 5000


def test_history_is_seeded_once_without_late_marks(tmp_path):
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    end = (int(time.time()) // 60) * 60 * NS
    points, start, seeded_end = prepare.seed_history(url, 2, 8, 1.0, end)
    assert (start, seeded_end) == (end - 3600 * NS, end)
    store = open_store(url)
    try:
        raw = store.read_points(start, end)
        steps = 3600 // int(prepare.HISTORY_INTERVAL_S)
        assert raw.height == points == steps * 16 * 2  # 16 devices, 2 fields each
        assert store.late_windows(100) == []  # nothing for the late-data sensor to re-run
        power = raw.filter(raw["field"] == "power_w")["value"]
        assert power.max() > 5000  # the spikes are in the history too
        # a second start: the range holds data already, nothing is written again
        assert prepare.seed_history(url, 2, 8, 1.0, end)[0] == 0
        assert store.read_points(start, end).height == points
    finally:
        store.close()


def test_history_stops_where_a_previous_run_began(tmp_path):
    """A restart fills only the hours before the data already there, never rewrites it."""
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    end = (int(time.time()) // 60) * 60 * NS
    store = open_store(url)
    try:
        store.write_points([("energy", "site-a", "meter-1", "power_w", end - 600 * NS, 1.0)])
        points, start, seeded_end = prepare.seed_history(url, 1, 4, 1.0, end)
        assert (start, seeded_end) == (end - 3600 * NS, end - 600 * NS)
        assert points == 3000 // int(prepare.HISTORY_INTERVAL_S) * 4 * 2
        assert store.read_points(end - 600 * NS, end).height == 1
    finally:
        store.close()


def test_demo_config_has_the_threshold_the_webhook_and_the_file_channel(tmp_path):
    path = tmp_path / "demo.toml"
    now = 1_764_806_400 * NS + 5 * 3600 * NS  # 2025-12-04 05:00 UTC
    prepare.write_config(path, tmp_path, 24, now)
    config = load_config(path)
    # partitions from the UTC midnight before the 24 h of history, not the default start
    assert config.rollups.start_ns == 1_764_720_000 * NS  # 2025-12-03 00:00 UTC
    [rule] = config.thresholds
    assert (rule.name, rule.measurement, rule.field, rule.above) == (
        "power-high", "energy", "power_w", 5000.0,
    )  # fmt: skip
    [hook] = config.alerts.webhooks
    assert (hook.name, hook.secret_env) == ("demo-receiver", prepare.SECRET_ENV)
    assert prepare.receiver_port(path) == int(hook.url.split(":")[2].split("/")[0])
    [log] = config.alerts.files
    assert log.path == str(tmp_path / "alerts.jsonl")
    # a dark site is one alert: its meters' silent alerts are inhibited; site-c's maintenance
    assert {(r.name, r.scope) for r in config.anomalies} == {
        ("meter-silent", "device"), ("site-dark", "site"),
    }  # fmt: skip
    [inhibit] = config.alerts.inhibit
    assert (inhibit.source, inhibit.target, inhibit.equal) == (
        {"rule": "site-dark"}, {"kind": "silent"}, ("site_id",),
    )  # fmt: skip
    [window] = config.alerts.maintenance
    assert (window.name, window.timezone) == ("site-c-sunday", "Asia/Tokyo")


def test_ports_in_use_are_one_line_errors():
    from telemetry_cli.errors import CliError

    receiver = Receiver(KEY, 0, print).start()
    try:
        with pytest.raises(CliError, match=r"MQTT port \d+ is in use .*TELEMETRY_MQTT_PORT"):
            prepare.check_ports({"MQTT": (receiver.port, "set TELEMETRY_MQTT_PORT")})
    finally:
        receiver.stop()


def test_a_resolved_alert_names_the_value_that_fired_it():
    from telemetry_cli.demo.receiver import describe

    payload = json.loads(BODY)
    payload["type"] = "alert.resolved"
    line = describe(payload)
    assert line.startswith("ALERT resolved critical power-high: energy.power_w (fired at 7012.5)")
    assert line.endswith("at site-a/meter-2")
