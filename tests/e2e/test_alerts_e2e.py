"""End to end: a reading published to NATS -> the ingest daemon's threshold fast path ->
the outbox -> alert_sensor and alert_job in a running ``dagster dev`` -> a signed webhook,
received by a real HTTP server on loopback and verified with ``standardwebhooks``.

A breaching reading gives exactly one ``alert.firing``; an in-bounds reading of the same
series exactly one ``alert.resolved``. Every wait is on a condition with a deadline sized
for a loaded 2-core CI machine (Dagster start-up alone can take a minute there).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from standardwebhooks import Webhook as Verifier

from telemetry_cli.dagster_graphql import graphql, wait_ready
from telemetry_cli.demo.dagster_dev import start_dagster, stop_dagster
from tests.alerts.dagster_helpers import SECRET, webhook_toml
from tests.alerts.receiver import Receiver
from tests.conftest import free_port
from tests.daemon.conftest import publish_all, wait_until

pytestmark = pytest.mark.slow

THRESHOLD = """
[[thresholds]]
name = "power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[alerts]
cooldown_seconds = 0
backoff_seconds = 1
"""

RUNS = """
query { runsOrError(filter: {pipelineName: "alert_job"}) {
  ... on Runs { results { runId status } } } }
"""
IN_FLIGHT = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def reading(value: float) -> tuple[str, bytes, None]:
    payload = json.dumps({"timestamp": time.time_ns(), "power_w": value}).encode()
    return ("iot.energy.site-a.meter-7", payload, None)


def verified(receiver: Receiver) -> list[dict]:
    """Every request's payload, each verified (raises on a bad signature)."""
    return [Verifier(SECRET).verify(r.body, r.headers) for r in list(receiver.requests)]


def alert_runs(url: str) -> list[dict]:
    return graphql(url, RUNS)["runsOrError"]["results"]


def test_breach_and_resolve_reach_the_webhook_once_each(nats_server, daemons, sqlite_url, tmp_path):
    receiver = Receiver(free_port()).start()
    config = tmp_path / "telemetry.toml"
    config.write_text(THRESHOLD + webhook_toml(receiver.url))
    env = {
        "TELEMETRY_STORE_URL": sqlite_url,
        "TELEMETRY_CONFIG": str(config),
        "OPS_SECRET": SECRET,
    }
    daemon = daemons(**env).start()
    port = free_port()
    log = tmp_path / "dagster.log"
    proc = start_dagster(tmp_path / "dagster_home", port, env, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(port, 180, proc=proc):
            pytest.fail(f"dagster dev did not become ready:\n{log.read_text()[-3000:]}")

        asyncio.run(publish_all(nats_server.url, [reading(9000.0)]))
        wait_until(lambda: receiver.requests, 120, "the firing webhook", interval=0.5)
        [firing] = verified(receiver)
        assert firing["type"] == "alert.firing"
        data = firing["data"]
        assert (data["rule"], data["kind"], data["severity"], data["state"]) == (
            "power-high", "threshold", "critical", "firing",
        )  # fmt: skip
        assert (data["site_id"], data["device_id"], data["value"]) == ("site-a", "meter-7", 9000.0)

        asyncio.run(publish_all(nats_server.url, [reading(100.0)]))
        wait_until(lambda: len(receiver.requests) >= 2, 120, "the resolved webhook", interval=0.5)

        # Exactly once: wait until no alert_job run is queued or running, then count.
        wait_until(
            lambda: not {r["status"] for r in alert_runs(url)} & IN_FLIGHT,
            120,
            "alert_job runs finished",
            interval=1.0,
        )
        payloads = verified(receiver)
        assert [p["type"] for p in payloads] == ["alert.firing", "alert.resolved"]
        resolved = payloads[1]["data"]
        assert resolved["alert_id"] == data["alert_id"] and resolved["state"] == "resolved"
        assert resolved["resolved_at"] is not None
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert len(set(ids)) == 2
        runs = alert_runs(url)
        assert 1 <= len(runs) <= 2 and {r["status"] for r in runs} == {"SUCCESS"}, runs
        assert daemon.stop() == 0
    finally:
        stop_dagster(proc)
        receiver.stop()
