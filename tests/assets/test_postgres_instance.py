"""The production instance (the repository's dagster.yaml, dagster-postgres) on the
machine's real PostgreSQL records a run and its per-partition materialisations."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from tests.assets.rollup_helpers import fleet_points, need_service, ns
from tests.pg import PG, PostgresUnavailable, temporary_database

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_database():
    try:
        with temporary_database() as name:
            yield name
    except PostgresUnavailable as exc:
        need_service(str(exc))


def test_postgres_instance_records_run_and_materializations(
    pg_database, tmp_path, monkeypatch, defs, store
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    for key, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": pg_database,
    }.items():
        monkeypatch.setenv(key, value)
    store.write_points(fleet_points(ns("2026-11-20T06:00:00Z"), 1))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-11-20-06:00",
                "dagster/asset_partition_range_end": "2026-11-20-06:45",
            },
        )
        assert result.success
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        for asset in ("rollup_15m", "site_15m", "portfolio_15m"):
            key = dg.AssetKey(asset)
            assert instance.get_materialized_partitions(key) == {
                "2026-11-20-06:00",
                "2026-11-20-06:15",
                "2026-11-20-06:30",
                "2026-11-20-06:45",
            }
        latest = instance.get_latest_materialization_event(dg.AssetKey("rollup_15m"))
        metadata = latest.asset_materialization.metadata
        assert metadata["rows"].value == 2 * 3 * 2  # per partition: sites x devices x fields
        assert metadata["partitions_in_run"].value == 4
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)


def test_dagster_cli_from_repo_root_uses_the_production_instance(pg_database):
    """Without DAGSTER_HOME, Dagster's CLI (`dagster dev` too) reads ./dagster.yaml: from the
    repository root that is the PostgreSQL instance, which loads given DAGSTER_PG_*."""
    import os
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": pg_database,
    }
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(dagster), "definitions", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "All code locations passed validation" in out.stderr + out.stdout
