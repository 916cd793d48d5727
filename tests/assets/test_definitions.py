"""The code location loads, and its names are a reviewed contract (a rename shows up here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import dagster as dg
import pytest

from telemetry_assets.definitions import build_defs
from telemetry_core.config import parse_config
from telemetry_core.store import StoreError

ASSETS = [
    "portfolio_15m",
    "portfolio_1h",
    "raw_points",
    "rollup_15m",
    "rollup_1h",
    "site_15m",
    "site_1h",
]
CHECKS = [
    "portfolio_15m:portfolio_15m_matches_sites",
    "portfolio_15m:portfolio_15m_schema_valid",
    "portfolio_1h:portfolio_1h_matches_sites",
    "portfolio_1h:portfolio_1h_schema_valid",
    "rollup_15m:rollup_15m_devices_complete",
    "rollup_15m:rollup_15m_matches_raw_counts",
    "rollup_15m:rollup_15m_schema_valid",
    "rollup_1h:rollup_1h_matches_quarters",
    "rollup_1h:rollup_1h_schema_valid",
    "site_15m:site_15m_matches_devices",
    "site_15m:site_15m_schema_valid",
    "site_1h:site_1h_matches_devices",
    "site_1h:site_1h_schema_valid",
]


def test_snapshot(defs):
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert sorted(k.to_user_string() for k in graph.get_all_asset_keys()) == ASSETS
    assert sorted(c.to_user_string() for c in graph.asset_check_keys) == CHECKS
    assert sorted(n for n in repo.job_names if not n.startswith("__")) == [
        "alert_job",
        "anomaly_job",
        "retention_job",
        "rollup_15m_job",
        "rollup_1h_job",
    ]
    assert sorted(s.name for s in repo.schedule_defs) == [
        "retention_schedule",
        "rollup_15m_schedule",
    ]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "alert_sensor",
        "anomaly_sensor",
        "late_data_sensor",
        "rollup_1h_follow_sensor",
    ]


def test_lineage_and_partitions(defs):
    graph = defs.get_repository_def().asset_graph
    parents = {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }
    assert parents == {
        "raw_points": [],
        "rollup_15m": ["raw_points"],
        "rollup_1h": ["rollup_15m"],
        "site_15m": ["rollup_15m"],
        "site_1h": ["rollup_1h"],
        "portfolio_15m": ["site_15m"],
        "portfolio_1h": ["site_1h"],
    }
    assert not graph.get(dg.AssetKey("raw_points")).is_materializable
    q = graph.get(dg.AssetKey("rollup_15m")).partitions_def
    h = graph.get(dg.AssetKey("rollup_1h")).partitions_def
    assert q.get_partition_keys_in_range(
        dg.PartitionKeyRange("2026-11-20-06:45", "2026-11-20-07:15")
    ) == ["2026-11-20-06:45", "2026-11-20-07:00", "2026-11-20-07:15"]
    assert q.timezone == h.timezone == "UTC"
    assert h.get_partition_keys_in_range(
        dg.PartitionKeyRange("2026-11-20-23:00", "2026-11-21-00:00")
    ) == ["2026-11-20-23:00", "2026-11-21-00:00"]


def test_defaults_need_no_ui_toggle(defs):
    repo = defs.get_repository_def()
    for item in [*repo.schedule_defs, *repo.sensor_defs]:
        assert item.default_status.value == "RUNNING", item.name


def test_import_reads_no_environment():
    """Importing the module with a hostile environment neither fails nor opens a store;
    Dagster's load (calling ``defs``) reads the config then, and a bad one fails the load
    naming the file."""
    code = (
        "import os; os.environ['TELEMETRY_STORE_URL']='sqlite:////nonexistent/dir/x.db'; "
        "os.environ['TELEMETRY_CONFIG']='/nonexistent.toml'; "
        "import telemetry_assets.definitions as d; print('imported'); d.defs()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "imported"
    assert out.returncode != 0
    assert "config file '/nonexistent.toml' does not exist" in out.stderr


def load_in_subprocess(tmp_path, toml: str, store_url: str | None = None) -> dict:
    """The code location exactly as Dagster loads it (``defs()``) from an environment."""
    config = tmp_path / "telemetry.toml"
    config.write_text(toml)
    code = textwrap.dedent(
        """
        import json, warnings
        warnings.simplefilter("ignore")
        import dagster as dg
        from telemetry_assets.definitions import defs
        d = defs()
        graph = d.get_repository_def().asset_graph
        schedule = d.get_schedule_def("rollup_15m_schedule")
        print(json.dumps({
            "cron": schedule.cron_schedule,
            "first": {
                k.to_user_string(): graph.get(k).partitions_def.get_first_partition_key()
                for k in graph.get_all_asset_keys() if graph.get(k).partitions_def
            },
            "raw_kinds": sorted(graph.get(dg.AssetKey("raw_points")).kinds),
        }))
        """
    )
    env = {**os.environ, "TELEMETRY_CONFIG": str(config)}
    env.pop("TELEMETRY_STORE_URL", None)
    if store_url:
        env["TELEMETRY_STORE_URL"] = store_url
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rollups_settings_reach_the_loaded_code_location(tmp_path):
    """[rollups] start and grace_seconds, written in the file TELEMETRY_CONFIG names, are
    where the partitions start and when the schedule fires; the store URL picks the kind."""
    default = load_in_subprocess(tmp_path, "")
    assert default["cron"] == "2-59/15 * * * *"
    assert set(default["first"].values()) == {"2026-01-01-00:00"}
    assert default["raw_kinds"] == ["sqlite"]

    custom = load_in_subprocess(
        tmp_path,
        '[rollups]\ngrace_seconds = 600\nstart = "2026-06-01T05:00:00Z"\n',
        store_url="influxdb://127.0.0.1:8086/telemetry",
    )
    assert custom["cron"] == "10-59/15 * * * *"
    assert sorted(custom["first"]) == sorted(ROLLUPS)
    assert set(custom["first"].values()) == {"2026-06-01-05:00"}
    assert custom["raw_kinds"] == ["influxdb"]


ROLLUPS = [a for a in ASSETS if a != "raw_points"]


def test_start_places_every_partition(tmp_path):
    repo = build_defs(
        parse_config({"rollups": {"start": "2026-03-29T01:00:00Z"}})
    ).get_repository_def()
    graph = repo.asset_graph
    for name in ROLLUPS:
        partitions = graph.get(dg.AssetKey(name)).partitions_def
        assert partitions.get_first_partition_key() == "2026-03-29-01:00", name
        assert not partitions.has_partition_key("2026-03-29-00:45")
    # the schedule has nothing to run before the first window has ended
    schedule = repo.get_schedule_def("rollup_15m_schedule")
    early = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 29, 1, 2, tzinfo=UTC), repository_def=repo
    )
    assert isinstance(schedule.evaluate_tick(early).skip_message, str)
    first = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 29, 1, 17, tzinfo=UTC), repository_def=repo
    )
    (request,) = schedule.evaluate_tick(first).run_requests
    assert request.partition_key == "2026-03-29-01:00"


def test_raw_points_kind_follows_the_store_url():
    for url, kind in [
        (None, "sqlite"),
        ("sqlite:///x.db", "sqlite"),
        ("influxdb://h:8086/db", "influxdb"),
        ("influxdb2://h:8086/b?org=o", "influxdb"),
    ]:
        graph = build_defs(store_url=url).get_repository_def().asset_graph
        assert graph.get(dg.AssetKey("raw_points")).kinds == {kind}, url
        assert graph.get(dg.AssetKey("rollup_15m")).kinds == {"polars", kind}, url
    with pytest.raises(StoreError, match="unsupported store URL 'bogus://x'"):
        build_defs(store_url="bogus://x")
