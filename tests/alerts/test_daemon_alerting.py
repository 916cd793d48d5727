"""The daemon's threshold fast path with a real nats-server: breaches persisted before the
ack, an alerts-database outage holds the ack back, an engine bug is a fault (never a dead
letter of stored readings), bad webhook secrets stop the daemon at start."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from ingest_daemon.alerting import ThresholdHook
from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.alerts import ThresholdEngine, list_alerts, open_alerts_db
from telemetry_core.alerts.db import AlertsDB, is_postgres
from telemetry_core.config import parse_config
from telemetry_core.store.sqlite import SqliteStore
from tests.alerts.dagster_helpers import SECRET
from tests.daemon.conftest import consumer_state, daemons, dlq_messages, publish_all, wait_until

__all__ = ["daemons"]  # the real-daemon fixture

RULE = {"name": "power-high", "measurement": "energy", "field": "power_w", "above": 5000.0,
        "severity": "critical"}  # fmt: skip
TOML = """
[[thresholds]]
name = "power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[[alerts.webhooks]]
name = "ops"
url = "http://127.0.0.1:9/hooks"
secret_env = "OPS_SECRET"
"""


def reading(value: float, device: str = "m1", t: int | None = None):
    t = time.time_ns() if t is None else t
    payload = json.dumps({"timestamp": t, "power_w": value}).encode()
    return (f"iot.energy.site-a.{device}", payload, None)


def alerts_in(path: str, state: str = "all") -> list[dict]:
    db = open_alerts_db(path)
    try:
        return list_alerts(db, state=state)
    finally:
        db.close()


@pytest.mark.parametrize("alerts", ["store file", "postgresql"])
def test_breach_and_resolve_are_persisted_by_the_running_daemon(
    nats_server, daemons, sqlite_url, tmp_path, request, alerts
):
    """SQLite store; the alerts in the store's file, or in PostgreSQL through
    TELEMETRY_ALERTS_DB (where Dagster on another machine reads them)."""
    config = tmp_path / "telemetry.toml"
    config.write_text(TOML)
    env = {"TELEMETRY_CONFIG": str(config), "OPS_SECRET": SECRET}
    if alerts == "postgresql":
        db_path = env["TELEMETRY_ALERTS_DB"] = request.getfixturevalue("postgres_url")
    else:
        db_path = sqlite_url.removeprefix("sqlite:///")  # the store's file holds the alerts
    daemon = daemons(**env).start()

    asyncio.run(publish_all(nats_server.url, [reading(9000.0)]))
    wait_until(lambda: alerts_in(db_path, "firing"), 30, "the breach persisted")
    asyncio.run(publish_all(nats_server.url, [reading(7000.0), reading(100.0)]))
    wait_until(lambda: alerts_in(db_path, "resolved"), 30, "the resolve persisted")

    [alert] = alerts_in(db_path)
    assert (alert["rule"], alert["device_id"], alert["value"]) == ("power-high", "m1", 9000.0)
    events = [(d["event"], d["outcome"]) for d in alert["deliveries"]]
    assert events == [("firing", "pending"), ("resolved", "pending")]  # one outbox entry each
    wait_until(
        lambda: asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 3, 30, "all acked"
    )
    assert daemon.stop() == 0


async def _run_daemon(nats_url: str, store_path: str, hook, msgs, until) -> Daemon:
    daemon = Daemon(
        Settings(nats_url=nats_url, http_port=-1, batch_max_delay_ms=50),
        config=parse_config({}),
        store=SqliteStore(store_path),
        after_commit=hook,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await publish_all(nats_url, msgs)
    deadline = time.monotonic() + 60
    while not until(daemon) and not task.done():
        assert time.monotonic() < deadline, "the scenario never reached its condition"
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return daemon


def test_an_engine_bug_is_a_fault_not_a_dead_letter(nats_server, tmp_path):
    db = open_alerts_db(str(tmp_path / "alerts.db"))
    engine = ThresholdEngine(parse_config({"thresholds": [RULE]}), db)

    def broken(points, seqs, now_ns):
        raise ZeroDivisionError("a bug")

    engine.apply = broken  # type: ignore[method-assign]
    daemon = asyncio.run(
        _run_daemon(
            nats_server.url,
            str(tmp_path / "t.db"),
            ThresholdHook(engine, db),
            [reading(9000.0)],
            until=lambda d: d.exit_code != 0,
        )
    )
    assert daemon.exit_code == 1
    assert "EngineFault" in daemon.health.fault and "ZeroDivisionError" in daemon.health.fault
    assert asyncio.run(dlq_messages(nats_server.url)) == [], "stored readings never dead-lettered"
    assert asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 0, "nothing acked"
    assert daemon.metrics.messages.labels("dead_lettered")._value.get() == 0


class Locker:
    """Another process holding the alerts database's write lock, until ``release``."""

    def __init__(self, location: str) -> None:
        open_alerts_db(location).close()
        if is_postgres(location):
            import psycopg

            from telemetry_core.alerts.postgres import LOCK_KEY

            self.conn = psycopg.connect(location, autocommit=True)
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        else:
            self.conn = sqlite3.connect(location, isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def test_an_alerts_database_outage_holds_the_ack_back(nats_server, tmp_path, alerts_url):
    alerts_path = alerts_url  # a SQLite file or a PostgreSQL database
    locker = Locker(alerts_path)  # another process holds the write lock
    db = AlertsDB(alerts_path, busy_timeout_s=0.1)
    hook = ThresholdHook(ThresholdEngine(parse_config({"thresholds": [RULE]}), db), db)

    async def scenario() -> tuple[Daemon, int]:
        daemon = Daemon(
            Settings(nats_url=nats_server.url, http_port=-1, batch_max_delay_ms=50),
            config=parse_config({}),
            store=SqliteStore(str(tmp_path / "t.db")),
            after_commit=hook,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await publish_all(nats_server.url, [reading(9000.0)])
        deadline = time.monotonic() + 60
        while daemon.metrics.store_errors._value.get() < 2:  # retried at least twice
            assert time.monotonic() < deadline, "the outage was never retried"
            await asyncio.sleep(0.05)
        held = (await consumer_state(nats_server.url))["ack_floor"]
        assert not daemon.writer.up, "reported as an outage"
        locker.release()
        while daemon.metrics.messages.labels("stored")._value.get() < 1:
            assert time.monotonic() < deadline, "never stored after the outage"
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return daemon, held

    daemon, held = asyncio.run(scenario())
    assert held == 0, "nothing acknowledged while the alert could not be persisted"
    assert daemon.exit_code == 0
    assert [a["state"] for a in alerts_in(alerts_path)] == ["firing"]
    assert asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 1
    assert asyncio.run(dlq_messages(nats_server.url)) == []
    locker.close()
    hook.close()


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "environment variable OPS_SECRET is not set"),
        ("whsec_!!!", "environment variable OPS_SECRET must hold a secret of the form"),
    ],
)
def test_a_bad_webhook_secret_stops_the_daemon_at_start(tmp_path, sqlite_url, secret, message):
    config = tmp_path / "telemetry.toml"
    config.write_text(TOML)
    env = {**os.environ, "TELEMETRY_CONFIG": str(config), "TELEMETRY_STORE_URL": sqlite_url}
    env.pop("OPS_SECRET", None)
    if secret is not None:
        env["OPS_SECRET"] = secret
    out = subprocess.run(
        [sys.executable, "-m", "ingest_daemon", "--http-port", "-1"],
        env={**env, "TELEMETRY_NATS_URL": "nats://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert "!!!" not in out.stderr
