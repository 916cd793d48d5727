"""Only a refusal the store states (``StoreRefused``, one type for every backend) makes
dead letters; anything else a write raises is a fault, never a verdict on the data.

The refusal here is a real one: SQLite aborting an insert through a trigger (an operator's
policy, as an InfluxDB field-type conflict would be a server's), which the SQLite store
translates into ``StoreRefused``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.store import StoreRefused, StoreUnavailable
from telemetry_core.store.sqlite import SqliteStore
from tests.daemon.conftest import dlq_messages, publish_all

POLICY = (
    "CREATE TRIGGER refuse_poison BEFORE INSERT ON raw WHEN NEW.value >= 1000.0 "
    "BEGIN SELECT RAISE(ABORT, 'values of 1000 and above refused by policy'); END"
)


def _refusing_store(path: str) -> SqliteStore:
    store = SqliteStore(path)  # creates the schema
    with sqlite3.connect(path) as db:
        db.execute(POLICY)
    return store


def test_sqlite_states_its_refusals_and_nothing_else(tmp_path):
    store = _refusing_store(str(tmp_path / "t.db"))
    now = time.time_ns()
    with pytest.raises(StoreRefused, match="refused by policy"):
        store.write_points([("energy", "site-a", "m-1", "power_w", now, 1000.0)], seqs=[1])
    with pytest.raises(StoreRefused, match="NOT NULL"):  # SQLite stores a NaN as NULL
        store.write_points([("energy", "site-a", "m-1", "power_w", now, float("nan"))])
    assert store.write_points([("energy", "site-a", "m-1", "power_w", now, 1.0)]).points == 1
    with sqlite3.connect(str(tmp_path / "t.db")) as db:
        db.execute("ALTER TABLE raw RENAME COLUMN value TO reading")  # a wrong column
    with pytest.raises(sqlite3.OperationalError) as info:
        store.write_points([("energy", "site-a", "m-1", "power_w", now, 2.0)])
    assert not isinstance(info.value, StoreUnavailable | StoreRefused), "a bug, not an outage"
    store.close()


def test_refused_readings_are_dead_lettered_and_the_rest_stored(nats_server, tmp_path):
    now = time.time_ns()
    values = {"m-1": 1.0, "poison-1": 1000.0, "m-2": 2.0, "m-3": 3.0, "poison-2": 5000.0}
    msgs = [
        (
            f"iot.energy.site-a.{dev}",
            json.dumps({"timestamp": now - i, "power_w": value}).encode(),
            None,
        )
        for i, (dev, value) in enumerate(values.items())
    ]
    store = _refusing_store(str(tmp_path / "t.db"))

    async def scenario() -> Daemon:
        daemon = Daemon(Settings(nats_url=nats_server.url, http_port=-1), store=store)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await publish_all(nats_server.url, msgs)
        deadline = time.monotonic() + 30
        while daemon.metrics.messages.labels("dead_lettered")._value.get() < 2:
            assert not task.done(), "the daemon stopped: a refusal is no fault"
            assert time.monotonic() < deadline, "refused messages never finished"
            await asyncio.sleep(0.1)
        assert daemon.health.status()["status"] == "ok", "a refusal is not an outage"
        stop.set()
        assert await task == 0
        return daemon

    daemon = asyncio.run(scenario())
    check = SqliteStore(str(tmp_path / "t.db"))
    assert sorted(check.read_points(0, 2**62)["device_id"].to_list()) == ["m-1", "m-2", "m-3"]
    dlq = asyncio.run(dlq_messages(nats_server.url))
    assert [h["Telemetry-Reason"] for _, h, _ in dlq] == ["store_rejected", "store_rejected"]
    assert all("refused by policy" in h["Telemetry-Error"] for _, h, _ in dlq)
    assert daemon.metrics.messages.labels("stored")._value.get() == 3
    assert daemon.metrics.readings_rejected.labels("store_rejected")._value.get() == 2
    assert daemon.metrics.faults._value.get() == 0
