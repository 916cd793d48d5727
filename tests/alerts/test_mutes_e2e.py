"""Silences and inhibition against real servers: nats-server and the ingest daemon record
the alerts, Dagster's alert_sensor and alert_job (real instance, real runs) deliver, and a
loopback receiver verifies every signature with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import warnings

import dagster as dg
import pytest
from standardwebhooks import Webhook as Verifier

from telemetry_assets.definitions import build_defs
from telemetry_assets.sensors.alerts import build_alert_sensor
from telemetry_assets.sensors.anomaly import build_anomaly_sensor
from telemetry_cli.main import main
from telemetry_core.alerts import list_alerts, open_alerts_db
from telemetry_core.store import open_store
from tests.alerts.dagster_helpers import (
    SECRET,
    S,
    materialise,
    recent_windows,
    run_request,
    set_env,
    step_metadata,
    webhook_toml,
)
from tests.alerts.receiver import Receiver
from tests.alerts.test_daemon_alerting import reading
from tests.alerts.test_dagster_alerts import reason, requests, tick
from tests.conftest import free_port
from tests.daemon.conftest import daemons, publish_all, wait_until

__all__ = ["daemons"]

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

THRESHOLD = """
[[thresholds]]
name = "power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[alerts]
cooldown_seconds = 0
backoff_seconds = 1
"""


@pytest.fixture
def receiver():
    r = Receiver(free_port()).start()
    yield r
    r.stop()


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


@pytest.fixture(params=["store file", "postgresql"])
def alerts_location(request, tmp_path) -> str:
    """The store's file, or PostgreSQL (``use`` puts it in TELEMETRY_ALERTS_DB)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "telemetry.db")


def use(location: str, monkeypatch) -> dict[str, str]:
    """After ``set_env`` (which clears it): point every process at ``location``."""
    if not location.startswith("postgres"):
        return {}
    monkeypatch.setenv("TELEMETRY_ALERTS_DB", location)
    return {"TELEMETRY_ALERTS_DB": location}


def cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out.strip()


def received(receiver: Receiver) -> list[dict]:
    """Every request's verified payload (verify raises on a bad signature)."""
    return [Verifier(SECRET).verify(r.body, r.headers) for r in receiver.requests]


def deliver(defs, instance, sensor, cursor):
    """One alert_sensor tick and, when it asks, the alert_job run: (cursor, metadata)."""
    result = tick(sensor, instance, cursor)
    if not requests(result):
        return cursor, None
    (request,) = requests(result)
    run = run_request(defs, instance, "alert_job", request)
    assert run.success
    return result.cursor, step_metadata(run, "deliver_alerts")


def test_silence_mutes_then_its_early_expiry_delivers_one_firing(
    tmp_path, monkeypatch, daemons, nats_server, receiver, instance, alerts_location, capsys
):
    config = set_env(tmp_path, monkeypatch, THRESHOLD + webhook_toml(receiver.url))
    defs, sensor = build_defs(config), build_alert_sensor(config)
    env = {"TELEMETRY_CONFIG": str(tmp_path / "telemetry.toml"), "OPS_SECRET": SECRET}
    env.update(use(alerts_location, monkeypatch))
    sid = cli(capsys, "silence", "add", "--match", "site_id=site-a", "--match",
              "device_id=m*", "--for", "1h", "--comment", "meter swap")  # fmt: skip
    daemon = daemons(**env).start()
    db = open_alerts_db(alerts_location)
    try:
        asyncio.run(publish_all(nats_server.url, [reading(9000.0)]))
        wait_until(lambda: list_alerts(db, "firing"), 30, "the breach recorded")
        [alert] = list_alerts(db)  # recorded as always, its notification suppressed
        assert [(d["event"], d["outcome"], d["reason"]) for d in alert["deliveries"]] == [
            ("firing", "suppressed", f"silence {sid}")
        ]
        cursor, md = deliver(defs, instance, sensor, None)
        assert md is None and receiver.requests == []  # nothing due, nothing received

        cli(capsys, "silence", "expire", sid)  # early, while the alert fires
        cursor, md = deliver(defs, instance, sensor, cursor)
        assert md is not None and (md["released"], md["delivered"]) == (1, 1)
        [firing] = received(receiver)
        assert firing["type"] == "alert.firing"
        assert firing["data"]["alert_id"] == alert["alert_id"]
        # exactly once: the sensor has nothing more, and another run sends nothing
        assert "nothing pending" in reason(tick(sensor, instance, cursor))
        again = run_request(defs, instance, "alert_job", dg.RunRequest(run_key="extra"))
        md = step_metadata(again, "deliver_alerts")
        assert (md["released"], md["attempted"]) == (0, 0)

        # heard, so its resolve is sent
        asyncio.run(publish_all(nats_server.url, [reading(100.0)]))
        wait_until(lambda: list_alerts(db, "resolved"), 30, "the resolve recorded")
        cursor, md = deliver(defs, instance, sensor, cursor)
        assert [p["type"] for p in received(receiver)] == ["alert.firing", "alert.resolved"]
    finally:
        db.close()
    assert daemon.stop() == 0


def test_silence_active_throughout_sends_nothing(
    tmp_path, monkeypatch, daemons, nats_server, receiver, instance, capsys
):
    config = set_env(tmp_path, monkeypatch, THRESHOLD + webhook_toml(receiver.url))
    defs, sensor = build_defs(config), build_alert_sensor(config)
    sid = cli(capsys, "silence", "add", "--match", "rule=power-*", "--for", "1h",
              "--comment", "noisy")  # fmt: skip
    daemon = daemons(TELEMETRY_CONFIG=str(tmp_path / "telemetry.toml"), OPS_SECRET=SECRET).start()
    db = open_alerts_db(str(tmp_path / "telemetry.db"))
    try:
        asyncio.run(publish_all(nats_server.url, [reading(9000.0)]))
        wait_until(lambda: list_alerts(db, "firing"), 30, "the breach recorded")
        asyncio.run(publish_all(nats_server.url, [reading(100.0)]))
        wait_until(lambda: list_alerts(db, "resolved"), 30, "the resolve recorded")
        [alert] = list_alerts(db)
        assert [(d["event"], d["outcome"], d["reason"]) for d in alert["deliveries"]] == [
            ("firing", "suppressed", f"silence {sid}"),
            ("resolved", "suppressed", f"silence {sid}"),  # its firing was never heard
        ]
        cli(capsys, "silence", "expire", sid)
        _, md = deliver(defs, instance, sensor, None)
        assert md is None and receiver.requests == []
    finally:
        db.close()
    assert daemon.stop() == 0


INHIBIT = """
[fields]
"energy.power_w" = "gauge"

[[anomalies]]
name = "meter-silent"
kind = "silent"
measurement = "energy"
field = "power_w"
windows = 2
severity = "warning"

[[anomalies]]
name = "site-dark"
kind = "silent"
scope = "site"
measurement = "energy"
field = "power_w"
windows = 2
severity = "critical"

[alerts]
cooldown_seconds = 0

[[alerts.inhibit]]
source = { rule = "site-dark" }
target = { kind = "silent" }
equal = ["site_id"]
"""


def test_a_dark_site_sends_one_alert_its_devices_are_inhibited(
    tmp_path, monkeypatch, receiver, instance, alerts_location
):
    config = set_env(tmp_path, monkeypatch, INHIBIT + webhook_toml(receiver.url))
    use(alerts_location, monkeypatch)
    defs = build_defs(config)
    ws = recent_windows(4)
    points = []
    for w in ws:
        devices = [("site-b", "m3"), ("site-b", "m4")]
        if w < ws[2]:  # site-a's meters stop after the first two windows
            devices += [("site-a", "m1"), ("site-a", "m2")]
        points += [("energy", s, d, "power_w", w + 60 * S, 100.0) for s, d in devices]
    store = open_store(f"sqlite:///{tmp_path / 'telemetry.db'}")
    db = open_alerts_db(alerts_location)
    try:
        store.write_points(points)
        materialise(defs, instance, ws)
        (request,) = tick(
            build_anomaly_sensor(config, settle_seconds=0), instance, None
        ).run_requests
        assert run_request(defs, instance, "anomaly_job", request).success
        _, md = deliver(defs, instance, build_alert_sensor(config), None)
        assert md is not None and md["delivered"] == 1
        [payload] = received(receiver)
        assert payload["type"] == "alert.firing"
        data = payload["data"]
        assert (data["rule"], data["site_id"], data["device_id"]) == ("site-dark", "site-a", None)
        alerts = {(a["rule"], a["device_id"]): a for a in list_alerts(db)}
        assert set(alerts) == {("site-dark", None), ("meter-silent", "m1"), ("meter-silent", "m2")}
        for device in ("m1", "m2"):
            [entry] = alerts[("meter-silent", device)]["deliveries"]
            assert (entry["outcome"], entry["reason"]) == (
                "suppressed", f"inhibited by {data['alert_id']}")  # fmt: skip
    finally:
        db.close()
        store.close()
