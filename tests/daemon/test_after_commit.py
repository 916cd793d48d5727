"""The post-commit seam (alerts build on it): ``after_commit(points, seqs)`` runs on the
writer thread after the store committed a batch and before any of its messages is
acknowledged; an outage in it is an outage of the write (retried with it), anything else
a fault."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.store import StoreRefused, StoreUnavailable
from telemetry_core.store.sqlite import SqliteStore
from tests.daemon.conftest import consumer_state, dlq_messages, publish_all


def test_after_commit_sees_committed_points_before_the_ack(nats_server, tmp_path):
    path = str(tmp_path / "t.db")
    now = time.time_ns()
    msgs = [
        (
            f"iot.energy.site-a.m-{i}",
            json.dumps({"timestamp": now - i, "power_w": float(i)}).encode(),
            None,
        )
        for i in range(5)
    ]
    calls: list[dict] = []

    def after_commit(points, seqs):
        assert threading.current_thread().name.startswith("store-writer")
        reader = SqliteStore(path)
        committed = reader.read_points(0, 2**62).height
        reader.close()
        acked = asyncio.run(consumer_state(nats_server.url))["ack_floor"]
        calls.append({"points": list(points), "seqs": list(seqs), "committed": committed})
        calls[-1]["acked"] = acked
        if len(calls) == 1:
            raise StoreUnavailable("alert events table locked")  # an outage: retried

    async def scenario() -> tuple[Daemon, list]:
        daemon = Daemon(
            Settings(nats_url=nats_server.url, http_port=-1, batch_max_delay_ms=300),
            store=SqliteStore(path),
            after_commit=after_commit,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        acks = await publish_all(nats_server.url, msgs)
        deadline = time.monotonic() + 30
        while daemon.metrics.messages.labels("stored")._value.get() < len(msgs):
            assert time.monotonic() < deadline, "messages never finished"
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return daemon, acks

    daemon, acks = asyncio.run(scenario())
    assert len(calls) >= 2, "the failed hook ran again with its write"
    assert calls[0]["points"] == calls[1]["points"] and calls[0]["seqs"] == calls[1]["seqs"]
    published = {subject: ack.seq for (subject, _, _), ack in zip(msgs, acks, strict=True)}
    for call in calls:
        assert call["committed"] >= len(call["points"]), "runs after the store commit"
        assert call["acked"] < min(call["seqs"]), "runs before the batch is acknowledged"
        for point, seq in zip(call["points"], call["seqs"], strict=True):
            assert published[f"iot.{point[0]}.{point[1]}.{point[2]}"] == seq
    assert sorted(p[2] for c in calls[1:] for p in c["points"]) == [f"m-{i}" for i in range(5)]
    assert daemon.metrics.store_errors._value.get() == 1


@pytest.mark.parametrize(
    "error",
    [KeyError("rule"), StoreRefused("alerts table refused the row")],
    ids=["KeyError", "StoreRefused"],
)
def test_a_failing_hook_is_a_fault_never_a_dead_letter(nats_server, tmp_path, error):
    """Not an outage: the readings are stored, so nothing may dead-letter them (not even a
    ``StoreRefused`` from the hook, which only a store write may state): the daemon stops
    with status 1 and acknowledges nothing."""
    msgs = [
        (
            "iot.energy.site-a.m-1",
            json.dumps({"timestamp": time.time_ns(), "power_w": 1.0}).encode(),
            None,
        )
    ]

    def after_commit(points, seqs):
        raise error

    async def scenario() -> tuple[int, Daemon]:
        daemon = Daemon(
            Settings(nats_url=nats_server.url, http_port=-1),
            store=SqliteStore(str(tmp_path / "t.db")),
            after_commit=after_commit,
        )
        task = asyncio.create_task(daemon.run(asyncio.Event()))
        await publish_all(nats_server.url, msgs)
        return await asyncio.wait_for(task, 60), daemon

    code, daemon = asyncio.run(scenario())
    assert code == 1 and daemon.metrics.faults._value.get() == 1
    assert type(error).__name__ in (daemon.health.fault or "")
    assert asyncio.run(dlq_messages(nats_server.url)) == []
    assert asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 0
