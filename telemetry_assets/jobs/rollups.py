"""Rollup jobs: one per partition grain (a run carries one partition key or range).

Each job takes every asset of its grain in ``ROLLUP_SPECS`` — device, site and portfolio —
plus their checks, so one run writes a window at every scope, in dependency order, in one
process. Selections name asset keys, so the jobs need no partitions of their own: they take
the assets' when the definitions are assembled.
"""

import dagster as dg

from telemetry_core.rollup import ROLLUP_SPECS


def _grain(grain: str) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*(s.asset for s in ROLLUP_SPECS if s.grain == grain))


rollup_15m_job = dg.define_asset_job(
    "rollup_15m_job",
    selection=_grain("15m"),
    description="15-minute rollups (device, site, portfolio) of one window or range.",
)

rollup_1h_job = dg.define_asset_job(
    "rollup_1h_job",
    selection=_grain("1h"),
    description="Hourly rollups (device, site, portfolio) of one hour or range.",
)
