"""Fixtures for daemon tests: real ``python -m ingest_daemon`` processes on a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry_cli.services import stop_process
from tests.conftest import free_port


class DaemonProc:
    def __init__(self, nats_url: str, store_url: str, log_dir: Path, **env: str) -> None:
        self.port = free_port()  # not a port another worker can get meanwhile
        self.env = {
            **os.environ,
            "TELEMETRY_NATS_URL": nats_url,
            "TELEMETRY_STORE_URL": store_url,
            "TELEMETRY_HTTP_PORT": str(self.port),
            "TELEMETRY_LOG_LEVEL": "INFO",
        }
        self.env.pop("TELEMETRY_CONFIG", None)  # never inherit the developer's config
        self.env.update(env)
        self.log_path = log_dir / f"daemon-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.argv = [sys.executable, "-m", "ingest_daemon"]  # a test may run a wrapper

    def start(self) -> DaemonProc:
        """Start the process and wait until it answers /health."""
        return self.launch().wait_healthy()

    def launch(self) -> DaemonProc:
        """Start the process without waiting (to start several at the same moment)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log)
        return self

    def wait_healthy(self) -> DaemonProc:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log()}")
            try:
                if self.health()["status"] in ("ok", "degraded"):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not become healthy: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def health(self) -> dict:
        return self.health_response()[1]

    def health_response(self) -> tuple[int, dict]:
        """HTTP status and body of /health (503 answers carry a body too)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        text = self.metrics_text()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$"
        m = re.search(pattern, text, re.M)
        return float(m.group(1)) if m else 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 30) -> int | None:
        return stop_process(self.proc, timeout)


@pytest.fixture
def daemons(nats_server, sqlite_url, tmp_path) -> Iterator:
    started: list[DaemonProc] = []

    def make(**env: str) -> DaemonProc:
        d = DaemonProc(nats_server.url, env.pop("store_url", sqlite_url), tmp_path, **env)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop(10)


async def publish_all(url: str, messages, *, acked: bool = True) -> list:
    """Publish (subject, payload, headers) tuples in order; with ``acked`` wait for
    JetStream's acks and return them (``PubAck``: stream sequence, duplicate flag).

    One connection publishes in order, so the stream order is the publish order."""
    import nats

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js)
    acks: list = []
    futures = []
    for subject, payload, headers in messages:
        if acked:
            futures.append(await js.publish_async(subject, payload, headers=headers))
            if len(futures) >= 2000:
                acks += await asyncio.gather(*futures)
                futures.clear()
        else:
            await nc.publish(subject, payload, headers=headers)
    acks += await asyncio.gather(*futures)
    await nc.flush()
    await nc.close()
    return acks


async def create_consumer(url: str, *, ack_wait_s: float, durable: str = "telemetry-ingest"):
    """Create the streams and the durable consumer before any daemon does, with a chosen
    ``ack_wait`` (daemons only verify an existing consumer), so a test controls when
    JetStream redelivers an unacknowledged message."""
    import nats
    from nats.js import api

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await js.add_consumer(
            "IOT",
            api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=ack_wait_s,
                max_ack_pending=40_000,
                filter_subject="iot.>",
                max_waiting=512,
            ),
        )
    finally:
        await nc.close()


async def consumer_state(url: str, durable: str = "telemetry-ingest") -> dict:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("IOT", durable)
        return {
            "pending": info.num_pending,
            "ack_pending": info.num_ack_pending,
            "ack_floor": info.ack_floor.stream_seq,
            "delivered": info.delivered.stream_seq,
        }
    finally:
        await nc.close()


async def dlq_messages(url: str) -> list:
    """Every dead letter (subject, headers, data), read without consuming anything.

    No ``IOT_DLQ`` stream yet means no letters; any other error fails the test (a broken
    connection must not read as "nothing was dead-lettered")."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    out = []
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info("IOT_DLQ")
        except NotFoundError:
            return []
        if info.state.messages == 0:
            return []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg("IOT_DLQ", seq)
            except NotFoundError:  # a letter deleted after a replay leaves a gap
                continue
            out.append((msg.subject, msg.headers or {}, msg.data))
    finally:
        await nc.close()
    return out


def telemetry(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the ``telemetry`` command in a fresh interpreter, without the developer's config."""
    full = {**os.environ, **env}
    full.pop("TELEMETRY_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "telemetry_cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
