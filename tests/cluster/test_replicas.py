"""TELEMETRY_STREAM_REPLICAS: streams created with it, existing ones verified against it.

Fewer replicas than asked stops the daemon (exit 2, one line naming the fix): whoever asked
for 3 counts on surviving a server loss. More than asked runs (the stream is safer than
asked for; a daemon started without the variable must not stop a cluster's ingest).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.daemon.conftest import DaemonProc, telemetry, wait_until
from tests.harness.nats_cluster import LocalCluster

pytestmark = pytest.mark.slow


def daemon_once(url: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m ingest_daemon`` expecting it to stop by itself."""
    full = {
        **os.environ,
        "TELEMETRY_NATS_URL": url,
        "TELEMETRY_STORE_URL": f"sqlite:///{tmp_path / 'once.db'}",
        "TELEMETRY_HTTP_PORT": "-1",
        **env,
    }
    full.pop("TELEMETRY_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "ingest_daemon"],
        env=full,
        capture_output=True,
        text=True,
        timeout=90,
    )


async def stream_replicas(urls: list[str]) -> dict[str, int]:
    import nats

    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        return {n: (await js.stream_info(n)).config.num_replicas for n in ("IOT", "IOT_DLQ")}
    finally:
        await nc.close()


async def create_streams(urls: list[str], replicas: int) -> None:
    import nats

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(urls)
    try:
        await ensure_streams(nc.jetstream(), replicas)
    finally:
        await nc.close()


async def raise_replicas(urls: list[str], replicas: int) -> None:
    """What ``nats stream edit IOT --replicas 3`` does."""
    import nats

    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        for name in ("IOT", "IOT_DLQ"):
            config = (await js.stream_info(name)).config
            config.num_replicas = replicas
            await js.update_stream(config)
    finally:
        await nc.close()


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def test_replicas_on_one_server_are_refused_in_one_line(nats_server, tmp_path):
    line = one_line_error(daemon_once(nats_server.url, tmp_path, TELEMETRY_STREAM_REPLICAS="3"))
    assert "TELEMETRY_STREAM_REPLICAS" in line and "non-clustered" in line, line
    for bad, why in (("0", "between 1 and 5"), ("three", "not an integer")):
        line = one_line_error(daemon_once(nats_server.url, tmp_path, TELEMETRY_STREAM_REPLICAS=bad))
        assert why in line, line


def test_existing_streams_are_verified_against_the_setting(cluster: LocalCluster, tmp_path):
    urls = cluster.urls.split(",")
    asyncio.run(create_streams(urls, 1))
    line = one_line_error(daemon_once(cluster.urls, tmp_path, TELEMETRY_STREAM_REPLICAS="3"))
    assert "has 1 replica(s) but TELEMETRY_STREAM_REPLICAS=3" in line, line
    # telemetry simulate creates/verifies the streams with the same variable
    sim = telemetry(
        "simulate", "--count", "1", "--nats-url", cluster.urls, "--quiet",
        TELEMETRY_STREAM_REPLICAS="3",
    )  # fmt: skip
    assert sim.returncode == 2 and "TELEMETRY_STREAM_REPLICAS=3" in sim.stderr, sim.stderr

    asyncio.run(raise_replicas(urls, 3))  # the fix the message names
    assert asyncio.run(stream_replicas(urls)) == {"IOT": 3, "IOT_DLQ": 3}
    wanted = DaemonProc(cluster.urls, f"sqlite:///{tmp_path / 'a.db'}", tmp_path,
                        TELEMETRY_STREAM_REPLICAS="3").start()  # fmt: skip
    default = DaemonProc(cluster.urls, f"sqlite:///{tmp_path / 'b.db'}", tmp_path).start()
    try:
        for d in (wanted, default):
            wait_until(lambda d=d: d.health()["consumer"]["lag"] is not None, 60, "consuming")
        assert "has 3 replicas (TELEMETRY_STREAM_REPLICAS=1): using it as it is" in default.log()
    finally:
        codes = [wanted.stop(), default.stop()]
    assert codes == [0, 0]


def test_streams_are_created_with_the_replicas(cluster: LocalCluster, tmp_path):
    d = DaemonProc(cluster.urls, f"sqlite:///{tmp_path / 'a.db'}", tmp_path,
                   TELEMETRY_STREAM_REPLICAS="3").start()  # fmt: skip
    try:
        wait_until(lambda: d.health()["consumer"]["lag"] is not None, 60, "consuming")
        assert asyncio.run(stream_replicas(cluster.urls.split(","))) == {"IOT": 3, "IOT_DLQ": 3}
    finally:
        assert d.stop() == 0
