"""Faults with real processes: kill -9, store outage, two daemons, nats-server restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from telemetry_core.store import open_store
from tests.daemon.conftest import consumer_state, publish_all, wait_until

pytestmark = pytest.mark.slow
NS = 10**9


def fleet_messages(n_msgs: int, readings_per_msg: int, *, devices: int = 50, prefix: str = "m"):
    """Deterministic messages; returns (messages, expected point count, expected value sum)."""
    base = int(time.time()) - 3600
    msgs, total = [], 0.0
    for i in range(n_msgs):
        dev = i % devices
        readings = []
        for k in range(readings_per_msg):
            ts = (base * NS) + (i // devices) * readings_per_msg * 1000 + k * 1000 + dev
            value = float(i * readings_per_msg + k)
            readings.append({"timestamp": ts, "power_w": value, "energy_kwh": value / 1000})
            total += value + value / 1000
        payload = json.dumps(readings if readings_per_msg > 1 else readings[0]).encode()
        msgs.append(
            (f"iot.energy.site-{dev % 3}.{prefix}-{dev}", payload, {"Nats-Msg-Id": f"{prefix}{i}"})
        )
    return msgs, n_msgs * readings_per_msg * 2, total


def stored_totals(url: str) -> tuple[int, float]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        count, total = db.execute("SELECT count(*), coalesce(sum(value), 0) FROM raw").fetchone()
    return count, total


def test_kill_9_mid_stream_loses_and_duplicates_nothing(nats_server, daemons, sqlite_url):
    msgs, points, total = fleet_messages(10_000, 10)  # 100k readings, 200k points
    daemon = daemons(TELEMETRY_BATCH_SIZE="2000").start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(
        lambda: daemon.metric("telemetry_ingest_readings_stored_total") > 10_000,
        60,
        "some progress",
    )
    daemon.kill()
    progress = stored_totals(sqlite_url)[0]
    assert 0 < progress < points, "killed in the middle of the stream"
    again = daemons(TELEMETRY_BATCH_SIZE="2000").start()
    wait_until(lambda: stored_totals(sqlite_url)[0] >= points, 120, "every point stored")
    wait_until(
        lambda: asyncio.run(consumer_state(nats_server.url))["ack_pending"] == 0, 60, "all acked"
    )
    count, value_sum = stored_totals(sqlite_url)
    assert count == points
    assert value_sum == pytest.approx(total, rel=1e-12)
    assert again.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 0
    assert again.stop() == 0


def test_store_outage_holds_acks_then_recovers(nats_server, daemons, sqlite_url):
    msgs, points, total = fleet_messages(6_000, 5, prefix="o")
    daemon = daemons(TELEMETRY_BATCH_SIZE="1000").start()
    first, rest = msgs[:1000], msgs[1000:]
    asyncio.run(publish_all(nats_server.url, first))
    wait_until(lambda: stored_totals(sqlite_url)[0] == 1000 * 10, 30, "first part stored")
    # Take the store away: another process holds SQLite's write lock.
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        asyncio.run(publish_all(nats_server.url, rest))
        wait_until(lambda: daemon.health()["store"]["up"] is False, 30, "store reported down")
        assert daemon.health()["status"] == "degraded"
        assert daemon.metric("telemetry_ingest_store_up") == 0
        before = asyncio.run(consumer_state(nats_server.url))
        errors = daemon.metric("telemetry_ingest_store_errors_total")
        wait_until(
            lambda: daemon.metric("telemetry_ingest_store_errors_total") >= errors + 2,
            60,
            "two more failed write attempts",
        )
        during = asyncio.run(consumer_state(nats_server.url))
        assert during["ack_floor"] == before["ack_floor"], (
            "nothing acknowledged while the store is down"
        )
        assert during["pending"] > 0, "the daemon stopped pulling: JetStream buffers the rest"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_until(
        lambda: stored_totals(sqlite_url)[0] >= points, 90, "everything stored after recovery"
    )
    count, value_sum = stored_totals(sqlite_url)
    assert count == points and value_sum == pytest.approx(total, rel=1e-12)
    wait_until(lambda: daemon.health()["status"] == "ok", 10, "healthy again")
    assert daemon.stop() == 0


def test_two_daemons_split_the_work(nats_server, daemons, sqlite_url):
    msgs, points, total = fleet_messages(20_000, 1, prefix="s")
    a = daemons(TELEMETRY_BATCH_SIZE="500").start()
    b = daemons(TELEMETRY_BATCH_SIZE="500").start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(lambda: stored_totals(sqlite_url)[0] >= points, 90, "every point stored")
    wait_until(
        lambda: asyncio.run(consumer_state(nats_server.url))["ack_pending"] == 0, 30, "all acked"
    )
    done_a = a.metric("telemetry_ingest_messages_total", outcome="stored")
    done_b = b.metric("telemetry_ingest_messages_total", outcome="stored")
    assert done_a > 0 and done_b > 0, (done_a, done_b)
    assert done_a + done_b == len(msgs)
    assert stored_totals(sqlite_url) == (points, pytest.approx(total, rel=1e-12))
    assert a.stop() == 0 and b.stop() == 0


def test_nats_restart_daemon_reconnects(nats_server, daemons, sqlite_url):
    msgs, points, _ = fleet_messages(4_000, 1, prefix="r")
    daemon = daemons().start()
    asyncio.run(publish_all(nats_server.url, msgs[:2000]))
    wait_until(lambda: stored_totals(sqlite_url)[0] >= 4000, 30, "first half stored")
    nats_server.restart()  # same port, same JetStream dir
    asyncio.run(publish_all(nats_server.url, msgs[2000:]))
    wait_until(
        lambda: stored_totals(sqlite_url)[0] >= points, 60, "second half stored after restart"
    )
    assert stored_totals(sqlite_url)[0] == points
    wait_until(lambda: daemon.health()["nats"]["connected"], 10, "reconnected")
    assert daemon.stop() == 0


def test_sigterm_finishes_the_batch_and_exits_zero(nats_server, daemons, sqlite_url):
    msgs, points, _ = fleet_messages(3_000, 1, prefix="t")
    daemon = daemons(TELEMETRY_BATCH_MAX_DELAY_MS="2000", TELEMETRY_BATCH_SIZE="100000").start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(
        lambda: asyncio.run(consumer_state(nats_server.url))["pending"] == 0, 30, "all delivered"
    )
    assert daemon.stop() == 0, "exited on SIGTERM by itself (a kill would be -9)"
    # Everything was in hand (uncommitted, 2 s batch delay): committed and acked before exit.
    state = asyncio.run(consumer_state(nats_server.url))
    assert stored_totals(sqlite_url)[0] == points
    assert state["pending"] == 0 and state["ack_pending"] == 0
    assert open_store(sqlite_url).read_points(0, 2**62).height == points
