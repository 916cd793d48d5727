"""A bug in the store's write, the commit/ack path or the message callback is never
swallowed, nor taken for the store refusing the readings: it is logged with its traceback,
counted, reported as ``error`` and stops the daemon with status 1; what was not
acknowledged stays in JetStream for the next daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time

import ingest_daemon.consumer
from ingest_daemon.daemon import Daemon
from ingest_daemon.settings import Settings
from telemetry_core.store.sqlite import SqliteStore
from tests.daemon.conftest import consumer_state, create_consumer, dlq_messages, publish_all


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


class BuggyStore(SqliteStore):
    """A backend with a bug: every write raises a ``TypeError`` (not a refusal)."""

    def write_points(self, points, *, seqs=None, late_cutoff_ns=None):
        raise TypeError("'NoneType' object is not subscriptable")


def test_a_bug_in_the_store_write_stops_the_daemon_and_dead_letters_nothing(
    nats_server, tmp_path, caplog
):
    """A ``TypeError`` from the backend is a fault: the daemon stops with status 1, the
    traceback logged, ``/health`` error; nothing dead-lettered, nothing acknowledged, and
    a daemon with a working store then stores every message (JetStream kept them)."""
    path = str(tmp_path / "t.db")
    asyncio.run(create_consumer(nats_server.url, ack_wait_s=2))
    daemon = Daemon(Settings(nats_url=nats_server.url, http_port=-1), store=BuggyStore(path))
    with caplog.at_level(logging.WARNING, logger="ingest_daemon"):
        code, health = asyncio.run(_run_until_stopped(daemon, nats_server.url, _messages(3)))
    assert code == 1
    assert daemon.metrics.faults._value.get() == 1
    assert health["status"] == "error" and "TypeError" in health["fault"]
    assert "Traceback" in caplog.text and "not subscriptable" in caplog.text
    assert "refused" not in caplog.text, "a bug is not the store refusing the readings"
    assert asyncio.run(dlq_messages(nats_server.url)) == [], "nothing dead-lettered"
    assert daemon.metrics.messages.labels("dead_lettered")._value.get() == 0
    state = asyncio.run(consumer_state(nats_server.url))
    assert state["ack_floor"] == 0, "nothing acknowledged"
    assert state["pending"] + state["ack_pending"] == 3

    async def restart() -> float:
        good = Daemon(Settings(nats_url=nats_server.url, http_port=-1), store=SqliteStore(path))
        stop = asyncio.Event()
        task = asyncio.create_task(good.run(stop))
        deadline = time.monotonic() + 30
        while good.metrics.messages.labels("stored")._value.get() < 3:
            assert time.monotonic() < deadline, "the messages never came back"
            await asyncio.sleep(0.1)
        stop.set()
        assert await task == 0
        return good.metrics.redelivered._value.get()

    assert asyncio.run(restart()) == 3, "the same messages, delivered again"
    assert SqliteStore(path).read_points(0, 2**62).height == 3


WRAPPER = """
import sys
from telemetry_core.store.sqlite import SqliteStore

def write_points(self, points, *, seqs=None, late_cutoff_ns=None):
    raise TypeError("'NoneType' object is not subscriptable")

SqliteStore.write_points = write_points  # a backend bug, in the real process
from ingest_daemon.cli import main
sys.exit(main([]))
"""


def test_a_bug_in_the_store_write_exits_the_process_with_status_1(
    nats_server, daemons, sqlite_url, tmp_path
):
    """The same fault in a real ``python -m ingest_daemon`` process: /health turns 503
    ``error`` naming the fault, the process exits with status 1, nothing is dead-lettered
    or acknowledged."""
    script = tmp_path / "buggy_daemon.py"
    script.write_text(WRAPPER)
    proc = daemons()
    proc.argv = [sys.executable, str(script)]
    proc.start()
    assert proc.health()["status"] == "ok"
    asyncio.run(publish_all(nats_server.url, _messages(3)))
    answers: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 60
    while proc.proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            answers.append(proc.health_response())
        time.sleep(0.05)
    assert proc.proc.wait(5) == 1, proc.log()
    errors = [body for status, body in answers if status == 503]
    assert errors, f"no 503 before the exit: {answers[-3:]}"
    assert errors[-1]["status"] == "error" and "TypeError" in errors[-1]["fault"]
    log = proc.log()
    assert "Traceback" in log and "TypeError: 'NoneType' object is not subscriptable" in log
    assert asyncio.run(dlq_messages(nats_server.url)) == []
    assert asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 0
