"""The scaling signals an autoscaler and on-call people act on, read from real daemons on a
real nats-server: ``telemetry_ingest_lag_seconds`` (age of the oldest message the durable
consumer has not acknowledged) and ``telemetry_ingest_dlq_messages`` (letters in IOT_DLQ)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from tests.daemon.conftest import dlq_messages, publish_all, telemetry, wait_until

pytestmark = pytest.mark.slow
REFRESH_S = 2.0  # the daemon refreshes its lag gauges every 2 s (health.LAG_INTERVAL_S)


def _msg(device: str, payload) -> tuple:
    return (f"iot.energy.site-a.{device}", json.dumps(payload).encode(), None)


def _stored(sqlite_url: str) -> int:
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT count(*) FROM raw").fetchone()[0]


def test_lag_seconds_rise_while_stopped_and_fall_to_zero(nats_server, daemons, sqlite_url):
    """Messages published while no daemon runs wait unacknowledged; a daemon that cannot
    store them (SQLite's write lock is held elsewhere) reports their age: at least the
    time since the *first* of them (not the newest), growing while they wait; with the
    store back they are stored and the age drops to 0."""
    first = daemons().start()  # creates the streams and the durable consumer
    assert first.metric("telemetry_ingest_lag_seconds") == 0
    assert first.stop() == 0

    now = int(time.time())
    t_first = time.time()
    asyncio.run(publish_all(nats_server.url, [_msg("m-1", {"timestamp": now, "power_w": 1})]))
    time.sleep(6)  # the daemon is stopped: the oldest message ages
    t_last = time.time()
    asyncio.run(publish_all(nats_server.url, [_msg("m-2", {"timestamp": now, "power_w": 2})]))

    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        daemon = daemons().start()
        wait_until(lambda: daemon.metric("telemetry_ingest_consumer_lag") == 2, 30, "lag seen")
        wait_until(lambda: daemon.metric("telemetry_ingest_lag_seconds") > 0, 30, "age seen")
        seen, at = daemon.metric("telemetry_ingest_lag_seconds"), time.time()
        # the oldest message's age (within one refresh), not the newest one's
        assert at - t_first - REFRESH_S - 1.5 <= seen <= at - t_first + 1.0, (seen, at - t_first)
        assert seen > at - t_last + 1.0, "the age of the newest message, not the oldest"
        wait_until(
            lambda: daemon.metric("telemetry_ingest_lag_seconds") >= seen + 2,
            30,
            "the age rising while the messages wait",
        )
        assert _stored(sqlite_url) == 0
        assert daemon.health()["consumer"]["lag_seconds"] > 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_until(lambda: _stored(sqlite_url) == 2, 60, "both stored once the store is back")
    wait_until(
        lambda: (
            daemon.metric("telemetry_ingest_lag_seconds") == 0
            and daemon.metric("telemetry_ingest_consumer_lag") == 0
        ),
        30,
        "caught up: age 0",
    )
    assert daemon.health()["consumer"]["lag_seconds"] == 0
    assert daemon.stop() == 0


def test_dlq_depth_after_hostile_messages_and_replay(nats_server, daemons, sqlite_url):
    """Hostile messages raise the DLQ depth by one letter each; ``telemetry dlq replay``
    of letters a fixed daemon accepts brings it down; what is still bad comes back."""
    now = int(time.time())
    daemon = daemons(TELEMETRY_MAX_PAYLOAD_BYTES="200").start()
    assert daemon.metric("telemetry_ingest_dlq_messages") == 0
    big = [{"timestamp": now + i, "power_w": i} for i in range(12)]  # > 200 bytes, valid
    hostile = [
        ("iot.energy.site-a.m-1", b"\xff\x00 not json", None),
        _msg("m-2", {"timestamp": now, "power_w": "NaN?"}),
        _msg("m-3", {"timestamp": now, "site_id": "site-b", "power_w": 1}),
        _msg("m-4", big),
        _msg("m-5", {"timestamp": now, "power_w": 5}),  # fine: no letter
    ]
    asyncio.run(publish_all(nats_server.url, hostile))
    wait_until(lambda: daemon.metric("telemetry_ingest_dlq_messages") == 4, 30, "4 letters")
    assert len(asyncio.run(dlq_messages(nats_server.url))) == 4
    assert daemon.health()["consumer"]["dlq_messages"] == 4
    assert daemon.stop() == 0

    fixed = daemons().start()  # the default payload limit: the big message is storable
    wait_until(lambda: fixed.metric("telemetry_ingest_dlq_messages") == 4, 30, "4 letters")
    out = telemetry("dlq", "replay", TELEMETRY_NATS_URL=nats_server.url)
    assert out.stdout.strip().splitlines()[-1] == "replayed 4, failed 0", out.stderr
    # the big one is stored now; the three hostile ones come back as new letters
    wait_until(lambda: _stored(sqlite_url) == 1 + 12, 30, "the fixed letter stored")
    wait_until(lambda: fixed.metric("telemetry_ingest_dlq_messages") == 3, 30, "3 letters")
    assert len(asyncio.run(dlq_messages(nats_server.url))) == 3
    assert fixed.stop() == 0
