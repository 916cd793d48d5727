"""Assets: raw points (external, fed by the ingest daemon) and the rollup graph, built
from the configuration by ``telemetry_assets.definitions.build_defs``."""

from telemetry_assets.assets.raw import RAW_POINTS, build_raw_points
from telemetry_assets.assets.rollups import build_rollup_asset, build_rollup_assets

__all__ = ["RAW_POINTS", "build_raw_points", "build_rollup_asset", "build_rollup_assets"]
