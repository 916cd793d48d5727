"""A store that refuses some readings for good (not an outage) must not wedge the daemon.

The store here is the real SQLite store with one deliberate refusal rule: a unit-level
stand-in for e.g. an InfluxDB field-type conflict (HTTP 400), which no retry can fix.
"""

from __future__ import annotations

import asyncio
import json
import time

from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.store.sqlite import SqliteStore
from tests.daemon.conftest import dlq_messages, publish_all


class RefusingStore(SqliteStore):
    def write_points(self, points, *, seqs=None, late_cutoff_ns=None):
        if any(p[2] == "poison" for p in points):
            raise ValueError("field type conflict: power_w is string, not float")
        return super().write_points(points, seqs=seqs, late_cutoff_ns=late_cutoff_ns)


def test_refused_readings_are_dead_lettered_and_the_rest_stored(nats_server, tmp_path):
    now = time.time_ns()
    msgs = [
        (
            f"iot.energy.site-a.{dev}",
            json.dumps({"timestamp": now - i, "power_w": float(i)}).encode(),
            None,
        )
        for i, dev in enumerate(["m-1", "poison", "m-2", "m-3", "poison"])
    ]
    store = RefusingStore(str(tmp_path / "t.db"))

    async def scenario() -> Daemon:
        daemon = Daemon(Settings(nats_url=nats_server.url, http_port=-1), store=store)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await publish_all(nats_server.url, msgs)
        deadline = time.monotonic() + 30
        while daemon.metrics.messages.labels("dead_lettered")._value.get() < 2:
            assert time.monotonic() < deadline, "refused messages never finished"
            await asyncio.sleep(0.1)
        stop.set()
        await task
        return daemon

    daemon = asyncio.run(scenario())
    check = SqliteStore(str(tmp_path / "t.db"))
    assert sorted(check.read_points(0, 2**62)["device_id"].to_list()) == ["m-1", "m-2", "m-3"]
    dlq = asyncio.run(dlq_messages(nats_server.url))
    assert [h["Telemetry-Reason"] for _, h, _ in dlq] == ["store_rejected", "store_rejected"]
    assert all("field type conflict" in h["Telemetry-Error"] for _, h, _ in dlq)
    assert daemon.metrics.messages.labels("stored")._value.get() == 3
    assert daemon.metrics.readings_rejected.labels("store_rejected")._value.get() == 2
