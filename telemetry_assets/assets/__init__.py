"""Assets: raw points (external, fed by the ingest daemon) and the rollup graph."""

from telemetry_assets.assets.raw import raw_points
from telemetry_assets.assets.rollups import (
    HOURLY_ASSETS,
    QUARTER_HOUR_ASSETS,
    ROLLUP_ASSETS,
    portfolio_1h,
    portfolio_15m,
    rollup_1h,
    rollup_15m,
    site_1h,
    site_15m,
)

__all__ = [
    "HOURLY_ASSETS",
    "QUARTER_HOUR_ASSETS",
    "ROLLUP_ASSETS",
    "portfolio_1h",
    "portfolio_15m",
    "raw_points",
    "rollup_1h",
    "rollup_15m",
    "site_1h",
    "site_15m",
]
