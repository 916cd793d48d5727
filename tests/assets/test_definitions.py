"""The code location loads, and its names are a reviewed contract (a rename shows up here)."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

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
        "rollup_15m_job",
        "rollup_1h_job",
    ]
    assert sorted(s.name for s in repo.schedule_defs) == ["rollup_15m_schedule"]
    assert sorted(s.name for s in repo.sensor_defs) == [
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
    """Loading the definitions with a hostile environment neither fails nor opens a store."""
    code = (
        "import os; os.environ['TELEMETRY_STORE_URL']='bogus://x'; "
        "os.environ['TELEMETRY_CONFIG']='/nonexistent.toml'; "
        "import telemetry_assets.definitions as d; print(len(d.defs.assets))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
