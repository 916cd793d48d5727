"""The production instance's storage (dagster.yaml: telemetry_assets.instance_storage) on
the machine's real PostgreSQL: it keeps its connections between calls, and recovers from
connections the server dropped."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent
from dagster._core.events.log import EventLogEntry

from tests.assets.rollup_helpers import need_service
from tests.pg import PG, PostgresUnavailable, admin, temporary_database

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance(tmp_path, monkeypatch):
    try:
        with temporary_database() as name:
            home = tmp_path / "dagster_home"
            home.mkdir()
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
            for key, value in {
                "DAGSTER_PG_HOST": PG["host"],
                "DAGSTER_PG_PORT": str(PG["port"]),
                "DAGSTER_PG_USER": PG["user"],
                "DAGSTER_PG_PASSWORD": "",
                "DAGSTER_PG_DB": name,
            }.items():
                monkeypatch.setenv(key, value)
            with dg.DagsterInstance.from_config(str(home)) as inst:
                yield inst, name
    except PostgresUnavailable as exc:
        need_service(str(exc))


def planned(run_id: str, n: int) -> list[EventLogEntry]:
    """``n`` planned events, as a backfill run writes one per asset partition."""
    out = []
    for i in range(n):
        event = DagsterEvent.build_asset_materialization_planned_event(
            "rollup_15m_job",
            "rollup_15m",
            AssetMaterializationPlannedData(dg.AssetKey("rollup_15m"), partition=f"p{i:04d}"),
        )
        out.append(
            EventLogEntry(
                error_info=None,
                level=10,
                user_message="",
                run_id=run_id,
                timestamp=time.time(),
                dagster_event=event,
                job_name="rollup_15m_job",
            )
        )
    return out


def sessions(database: str) -> int:
    """Sessions the server has ever established to ``database`` (pg_stat_database, 14+)."""
    with admin() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_storage_keeps_its_connections_between_calls(instance):
    """Stock dagster-postgres opens a connection per statement (two per asset event: 100
    sessions for these 50 events). Counted by the server, not by the client, so the test
    also fails if a Dagster upgrade stops reading the engine this storage installs."""
    inst, database = instance
    run_id = str(uuid.uuid4())
    events = planned(run_id, 50)
    inst.event_log_storage.store_event(events[0])  # the pool's first connection
    inst.get_runs()
    inst.all_instigator_state()
    before = sessions(database)
    for event in events[1:]:
        inst.event_log_storage.store_event(event)
    for _ in range(10):
        inst.get_runs()
        inst.all_instigator_state()
    opened = sessions(database) - before
    assert opened <= 2, f"{opened} new sessions for 49 events and 20 reads"
    assert len(inst.all_logs(run_id)) == 50


def test_storage_replaces_connections_the_server_dropped(instance):
    """A pooled connection killed on the server (a restart, an idle timeout) is replaced on
    its next use (pre-ping) instead of failing that call."""
    inst, database = instance
    run_id = str(uuid.uuid4())
    first, second = planned(run_id, 2)
    inst.event_log_storage.store_event(first)
    inst.get_runs()
    with admin() as conn:
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    inst.event_log_storage.store_event(second)
    assert inst.get_runs() == []
    assert len(inst.all_logs(run_id)) == 2
