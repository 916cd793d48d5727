"""A PostgreSQL outage under a running daemon: every session of the store's database is
terminated and new ones refused (what a server restart or failover looks like from the
client) while messages keep arriving; nothing is acknowledged meanwhile, and once the
database takes connections again the same daemon stores everything, exactly once.

Only the test's own database goes away (``ALLOW_CONNECTIONS false`` applies to superusers
too): the shared server keeps serving everyone else."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.daemon.conftest import consumer_state, publish_all, wait_until
from tests.daemon.test_faults import fleet_messages
from tests.pg import admin

pytestmark = pytest.mark.slow


def stored_totals(url: str) -> tuple[int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('raw')").fetchone() == (None,):
            return 0, 0.0  # the daemon creates the tables with its first write
        row = conn.execute("SELECT count(*), coalesce(sum(value), 0) FROM raw").fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def _set_outage(database: str, *, down: bool) -> None:
    conn = admin()
    try:
        allow = "false" if down else "true"
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allow}')  # our own name
        if down:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
    finally:
        conn.close()


def test_postgres_outage_holds_acks_then_recovers(nats_server, daemons, postgres_url):
    parts = urlsplit(postgres_url)
    database = parts.path.lstrip("/")
    secret = "pg-s3cr3t"  # trust authentication takes any password; it must never show
    netloc = f"{parts.username or 'postgres'}:{secret}@{parts.hostname}:{parts.port or 5432}"
    store_url = urlunsplit(parts._replace(netloc=netloc))
    msgs, points, total = fleet_messages(4_000, 5, prefix="pg")
    daemon = daemons(store_url=store_url, TELEMETRY_BATCH_SIZE="1000").start()
    first, rest = msgs[:1000], msgs[1000:]
    asyncio.run(publish_all(nats_server.url, first))
    wait_until(lambda: stored_totals(postgres_url)[0] == 1000 * 10, 30, "first part stored")
    _set_outage(database, down=True)
    try:
        asyncio.run(publish_all(nats_server.url, rest))
        wait_until(lambda: daemon.health()["store"]["up"] is False, 30, "store reported down")
        assert daemon.health()["status"] == "degraded"
        before = asyncio.run(consumer_state(nats_server.url))
        errors = daemon.metric("telemetry_ingest_store_errors_total")
        wait_until(
            lambda: daemon.metric("telemetry_ingest_store_errors_total") >= errors + 2,
            60,
            "two more failed write attempts",
        )
        during = asyncio.run(consumer_state(nats_server.url))
        assert during["ack_floor"] == before["ack_floor"], "nothing acked while the store is down"
        assert during["pending"] > 0, "the daemon stopped pulling: JetStream buffers the rest"
    finally:
        _set_outage(database, down=False)
    wait_until(
        lambda: stored_totals(postgres_url)[0] >= points, 90, "everything stored after recovery"
    )
    count, value_sum = stored_totals(postgres_url)
    assert count == points and value_sum == pytest.approx(total, rel=1e-12)
    wait_until(lambda: daemon.health()["status"] == "ok", 30, "healthy again")
    wait_until(
        lambda: asyncio.run(consumer_state(nats_server.url))["ack_pending"] == 0, 30, "all acked"
    )
    assert daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 0
    log = daemon.log_path.read_text(errors="replace")
    assert "store unavailable" in log and secret not in log
    assert daemon.stop() == 0
