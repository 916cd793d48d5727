"""A bug in the commit/ack path or the message callback is never swallowed: it is logged
with its traceback, counted, reported as ``error`` and stops the daemon with status 1;
what was not acknowledged stays in JetStream for the next daemon."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import ingest_daemon.consumer
from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.store.sqlite import SqliteStore
from tests.daemon.conftest import consumer_state, publish_all


def _messages(n: int) -> list:
    now = time.time_ns()
    return [
        (
            f"iot.energy.site-a.m-{i}",
            json.dumps({"timestamp": now - i, "power_w": float(i)}).encode(),
            None,
        )
        for i in range(n)
    ]


async def _run_until_stopped(daemon: Daemon, url: str, msgs: list) -> tuple[int, dict]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await publish_all(url, msgs)
    exit_code = await asyncio.wait_for(task, 60)  # the fault must stop it on its own
    return exit_code, daemon.health.status()


def test_a_bug_after_the_commit_stops_the_daemon_loudly(nats_server, tmp_path, caplog):
    def broken_on_commit(arrived, commit_ns):
        raise RuntimeError("bug in the commit path")

    daemon = Daemon(
        Settings(nats_url=nats_server.url, http_port=-1),
        store=SqliteStore(str(tmp_path / "t.db")),
        on_commit=broken_on_commit,
    )
    with caplog.at_level(logging.ERROR, logger="ingest_daemon"):
        code, health = asyncio.run(_run_until_stopped(daemon, nats_server.url, _messages(3)))
    assert code == 1
    assert daemon.metrics.faults._value.get() == 1
    assert health["status"] == "error" and "bug in the commit path" in health["fault"]
    [record] = [r for r in caplog.records if r.getMessage().startswith("fault in")]
    assert record.exc_info is not None and "RuntimeError" in caplog.text  # the traceback


def test_a_bug_in_the_message_callback_stops_the_daemon_unacknowledged(
    nats_server, tmp_path, caplog, monkeypatch
):
    def broken_decode(*args, **kwargs):
        raise KeyError("bug in decoding")

    monkeypatch.setattr(ingest_daemon.consumer, "decode_message", broken_decode)
    daemon = Daemon(
        Settings(nats_url=nats_server.url, http_port=-1),
        store=SqliteStore(str(tmp_path / "t.db")),
    )
    with caplog.at_level(logging.ERROR, logger="ingest_daemon"):
        code, health = asyncio.run(_run_until_stopped(daemon, nats_server.url, _messages(3)))
    assert code == 1
    assert daemon.metrics.faults._value.get() >= 1
    assert health["status"] == "error" and "KeyError" in health["fault"]
    assert "bug in decoding" in caplog.text and "Traceback" in caplog.text
    state = asyncio.run(consumer_state(nats_server.url))
    assert state["ack_floor"] == 0, "nothing acknowledged: JetStream keeps every message"


def test_a_clean_stop_exits_zero(nats_server, tmp_path):
    async def scenario() -> int:
        daemon = Daemon(
            Settings(nats_url=nats_server.url, http_port=-1),
            store=SqliteStore(str(tmp_path / "t.db")),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await publish_all(nats_server.url, _messages(3))
        deadline = time.monotonic() + 30
        while daemon.metrics.messages.labels("stored")._value.get() < 3:
            assert time.monotonic() < deadline, "messages never stored"
            await asyncio.sleep(0.05)
        assert daemon.health.status()["status"] == "ok"
        stop.set()
        return await task

    assert asyncio.run(scenario()) == 0
