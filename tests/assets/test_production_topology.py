"""Dagster as it is deployed: a code server, a webserver and a daemon as separate processes,
the root dagster.yaml on the machine's PostgreSQL, the root workspace.yaml pointing at the
code server over gRPC. `telemetry backfill --url` runs a real backfill through it, the
sensors tick, and stopping leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from telemetry_cli.dagster_graphql import graphql
from telemetry_cli.ports import wait_port
from telemetry_core.config import load_config
from telemetry_core.store import open_store
from tests.assets.production_topology import (
    LOCATION,
    start_topology,
    stop_topology,
    wait_topology,
)
from tests.assets.rollup_helpers import (
    CONFIG_TOML,
    LEVELS,
    assert_rows_close,
    fleet_points,
    need_service,
    ns,
    recompute,
)
from tests.pg import PG, PostgresUnavailable, temporary_database

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(420)]

START = ns("2026-11-20T06:00:00Z")
SENSORS = {"late_data_sensor", "rollup_1h_follow_sensor", "anomaly_sensor", "alert_sensor"}

SENSOR_TICKS = """
query($selector: RepositorySelector!) { sensorsOrError(repositorySelector: $selector) {
  __typename ... on Sensors { results { name sensorState { status
    ticks(limit: 20) { status timestamp error { message } } } } } } }
"""
BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status runs { runId status tags { key value } } } } }
"""


def sensor_ticks(url: str) -> dict[str, list[dict]]:
    selector = {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}
    data = graphql(url, SENSOR_TICKS, {"selector": selector})["sensorsOrError"]
    assert data["__typename"] == "Sensors", data
    return {s["name"]: s["sensorState"]["ticks"] for s in data["results"]}


def wait_for(condition, timeout: float, interval: float = 1.0):
    """The condition's value once truthy, or its last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_backfill_and_sensors_in_the_production_topology(tmp_path):
    (tmp_path / "telemetry.toml").write_text(CONFIG_TOML)
    env = {
        "TELEMETRY_STORE_URL": f"sqlite:///{tmp_path / 'telemetry.db'}",
        "TELEMETRY_CONFIG": str(tmp_path / "telemetry.toml"),
    }
    with contextlib.ExitStack() as stack:
        try:
            database = stack.enter_context(temporary_database())
        except PostgresUnavailable as exc:
            need_service(str(exc))
        store = open_store(env["TELEMETRY_STORE_URL"])
        stack.callback(store.close)
        store.write_points(fleet_points(START, 2))
        topo = start_topology(tmp_path, database, env)
        try:
            _exercise(topo, env, store, database)
        finally:
            survivors = stop_topology(topo)
    assert survivors == [], f"process groups still alive after stop: {survivors}"
    for port in (topo.web_port, topo.code_port):
        assert not wait_port(port, timeout=0.5), f"port {port} still accepting connections"


def _exercise(topo, env: dict[str, str], store, database: str) -> None:
    problem = wait_topology(topo, timeout=180)
    assert problem is None, f"{problem}\n{topo.tail()}"
    out = subprocess.run(
        [sys.executable, "-m", "telemetry_cli", "backfill",
         "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T08:00:00Z",
         "--url", topo.url, "--poll", "1"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr + topo.tail()
    assert "30/30 asset partitions done" in out.stdout  # 3 assets x 8 quarters + 3 x 2 hours
    window = (START, START + 2 * 3600 * 10**9)
    want = recompute(store, *window, load_config(env["TELEMETRY_CONFIG"]))
    for level in LEVELS:
        assert_rows_close(store.read_rollups(level, *window), want[level])

    # The backfill and its runs live in PostgreSQL, and the daemon finishes it.
    backfill_id = out.stdout.split()[1].rstrip(":")

    def finished() -> dict | None:
        b = graphql(topo.url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return b if b["status"] != "REQUESTED" else None

    data = wait_for(finished, timeout=90)
    assert data and data["status"] == "COMPLETED_SUCCESS", data
    assert [r["status"] for r in data["runs"]] == ["SUCCESS", "SUCCESS"], data["runs"]
    assert {r["runId"] for r in data["runs"]} <= _pg_run_ids(database)

    # Every sensor ticks in the daemon (evaluated by the code server), none fails.
    def all_ticked() -> dict[str, list[dict]] | None:
        ticks = sensor_ticks(topo.url)
        return ticks if all(ticks.get(s) for s in SENSORS) else None

    ticks = wait_for(all_ticked, timeout=90)
    assert ticks, f"sensors without a tick: {sensor_ticks(topo.url)}\n{topo.tail()}"
    for sensor in SENSORS:
        failed = [t["error"] for t in ticks[sensor] if t["status"] == "FAILURE"]
        assert not failed, (sensor, failed)
    # anomaly_sensor read the backfill's rollup_15m materialisations (no rules: passed over)
    assert wait_for(lambda: _anomaly_saw_materialisations(topo.url), timeout=60)


def _pg_run_ids(database: str) -> set[str]:
    import psycopg2

    conn = psycopg2.connect(dbname=database, connect_timeout=3, **PG)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id FROM runs")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


ANOMALY_TICKS = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 20) { status skipReason cursor } } } } }
"""


def _anomaly_saw_materialisations(url: str) -> bool:
    selector = {
        "repositoryName": "__repository__",
        "repositoryLocationName": LOCATION,
        "sensorName": "anomaly_sensor",
    }
    ticks = graphql(url, ANOMALY_TICKS, {"selector": selector})["sensorOrError"]["sensorState"][
        "ticks"
    ]
    return any("materialisations passed over" in (t.get("skipReason") or "") for t in ticks)
