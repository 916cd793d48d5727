"""Every metric the README documents is served by the real daemon, and each one moves when
the thing it counts happens (a metric stuck at its initial value is a broken dashboard)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.daemon.conftest import publish_all, wait_until

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"

# name (as exposed) -> labels to read it by; the series each scenario step must move
MOVING = {
    "telemetry_ingest_messages_total": [
        {"outcome": o} for o in ("stored", "partial", "dead_lettered")
    ],
    "telemetry_ingest_readings_stored_total": [{}],
    "telemetry_ingest_readings_rejected_total": [
        {"reason": "non_numeric"},
        {"reason": "undecodable"},
    ],
    "telemetry_ingest_batch_seconds_count": [{}],
    "telemetry_ingest_points_stored_total": [{}],
    "telemetry_ingest_delay_seconds_count": [{}],
    "telemetry_ingest_late_windows_marked_total": [{}],
    "telemetry_ingest_redelivered_total": [{}],
    "telemetry_ingest_store_errors_total": [{}],
    "telemetry_ingest_keepalives_total": [{}],
}
GAUGES = (
    "telemetry_ingest_consumer_lag",
    "telemetry_ingest_store_up",
    "telemetry_ingest_nats_connected",
)


def documented_metrics() -> set[str]:
    return set(re.findall(r"`(telemetry_ingest_[a-z_]+)", README.read_text()))


def _msg(device: str, payload) -> tuple:
    return (f"iot.energy.site-a.{device}", json.dumps(payload).encode(), None)


def test_every_documented_metric_appears_and_moves(nats_server, daemons, sqlite_url):
    now = int(time.time())
    env = {"TELEMETRY_ACK_WAIT_S": "3"}
    # A redelivery for the daemon under test: another one dies holding a message.
    holder = daemons(TELEMETRY_BATCH_MAX_DELAY_MS="600000", **env).start()
    asyncio.run(publish_all(nats_server.url, [_msg("held", {"timestamp": now, "power_w": 1})]))
    wait_until(lambda: holder.health()["held_messages"] == 1, 30, "held")
    holder.kill()

    daemon = daemons(**env).start()
    text = daemon.metrics_text()
    documented = documented_metrics()
    assert len(documented) >= 12, "the README lists the metrics"
    for name in documented | set(MOVING) | set(GAUGES) | {"telemetry_ingest_faults_total"}:
        base = name.removesuffix("_count")
        assert re.search(rf"^# TYPE {base} ", text, re.M), f"{name} not served"
    before = {
        (n, json.dumps(lb)): daemon.metric(n, **lb) for n, lbs in MOVING.items() for lb in lbs
    }
    assert daemon.metric("telemetry_ingest_store_up") == 1
    assert daemon.metric("telemetry_ingest_nats_connected") == 1

    # stored, partial, dead-lettered, and a late reading (its window ended an hour ago)
    messages = [
        _msg("m-1", {"timestamp": now, "power_w": 2.5, "energy_kwh": 0.1}),
        _msg("m-2", [{"timestamp": now, "power_w": 1}, {"timestamp": now, "power_w": "x"}]),
        ("iot.energy.site-a.m-3", b"\xff", None),
        _msg("m-4", {"timestamp": now - 3600, "power_w": 4}),
    ]
    asyncio.run(publish_all(nats_server.url, messages))
    wait_until(
        lambda: (
            daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") >= 1
            and daemon.metric("telemetry_ingest_redelivered_total") >= 1
        ),
        30,
        "messages finished and the held one redelivered",
    )

    # a store outage with messages waiting: store down, errors, lag, keep-alives
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        later = [_msg(f"w-{i}", {"timestamp": now, "power_w": i}) for i in range(50)]
        asyncio.run(publish_all(nats_server.url, later))
        wait_until(
            lambda: (
                daemon.metric("telemetry_ingest_store_up") == 0
                and daemon.metric("telemetry_ingest_consumer_lag") > 0
                and daemon.metric("telemetry_ingest_keepalives_total") > 0
            ),
            60,
            "outage seen: store down, lag, keep-alives",
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(
        lambda: (
            daemon.metric("telemetry_ingest_store_up") == 1
            and daemon.metric("telemetry_ingest_consumer_lag") == 0
        ),
        60,
        "store back, lag drained",
    )

    # NATS goes away and comes back
    nats_server.stop()
    wait_until(lambda: daemon.metric("telemetry_ingest_nats_connected") == 0, 30, "disconnected")
    nats_server.start()
    wait_until(lambda: daemon.metric("telemetry_ingest_nats_connected") == 1, 60, "reconnected")

    stuck = [
        (n, lb)
        for n, lbs in MOVING.items()
        for lb in lbs
        if daemon.metric(n, **lb) <= before[(n, json.dumps(lb))]
    ]
    assert not stuck, f"metrics that never moved: {stuck}"
    assert daemon.metric("telemetry_ingest_readings_stored_total") == 1 + 1 + 1 + 1 + 50
    assert daemon.stop() == 0
