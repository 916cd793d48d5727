"""Rollup jobs: one per partition grain (a run carries one partition key or range).

Each job takes every asset of its grain — device, site and portfolio — plus their checks,
so one run writes a window at every scope, in dependency order, in one process.
"""

import dagster as dg

from telemetry_assets.assets import HOURLY_ASSETS, QUARTER_HOUR_ASSETS

rollup_15m_job = dg.define_asset_job(
    "rollup_15m_job",
    selection=dg.AssetSelection.assets(*QUARTER_HOUR_ASSETS),
    description="15-minute rollups (device, site, portfolio) of one window or range.",
)

rollup_1h_job = dg.define_asset_job(
    "rollup_1h_job",
    selection=dg.AssetSelection.assets(*HOURLY_ASSETS),
    description="Hourly rollups (device, site, portfolio) of one hour or range.",
)
