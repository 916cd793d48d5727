"""The rollup graph, built from ``telemetry_core.rollup.ROLLUP_SPECS`` (one asset a row):
raw_points → rollup_15m → rollup_1h, and the site/portfolio rollups of both grains.

Every asset is range-aware: a run covers ``context.partition_time_window`` (one partition
or a whole backfill chunk), reads its inputs from the store, and *replaces* every row of
its windows in one commit, so a re-run after late data or a backfill is idempotent. Rows
are written inside the asset and a ``MaterializeResult`` is returned: no IO manager (the
polars parquet IO manager cannot read under polars 2.x, nor persist one output spanning
several partitions).

Partials are merged, never averaged: hourly rows combine the four quarters, site rows
combine the site's device rows, portfolio rows combine the site rows.
"""

import time

import dagster as dg
import polars as pl

from telemetry_assets.assets.common import (
    late_points,
    scoped_site,
    time_range_ns,
    window_metadata,
)
from telemetry_assets.assets.raw import RAW_POINTS
from telemetry_assets.names import TSDB_POOL
from telemetry_assets.resources import TelemetryStore
from telemetry_core.retention_guard import kept_windows, replace_ranges
from telemetry_core.rollup import ROLLUP_SPECS, RollupSpec, compute_rollup, with_work_hours
from telemetry_core.windows import parse_partition_key

# Partitions per backfill run: a week of quarters, four weeks of hours. Run overhead is
# seconds per run on this hardware, so one run per partition would make history
# backfills take hours; a chunk this size keeps one run's memory in the low hundreds of MB.
PARTITIONS_PER_RUN = 672

SCOPE_TEXT = {
    "device": "Per-device",
    "site": 'Per-site (device_id "*")',
    "portfolio": 'Whole-portfolio (site_id and device_id "*")',
}
GRAIN_TEXT = {"15m": "15-minute", "1h": "hourly"}


def describe(spec: RollupSpec) -> str:
    source = (
        "aggregated from the raw points"
        if spec.parent is None
        else f"merged from the stored {spec.parent} rows"
    )
    return (
        f"{SCOPE_TEXT[spec.scope]} {GRAIN_TEXT[spec.grain]} partials (count, sum, min, max, "
        f"first, last), {source}; store level `{spec.level}`."
    )


def _run(
    context: dg.AssetExecutionContext, store: TelemetryStore, spec: RollupSpec
) -> dg.MaterializeResult:
    start, end = time_range_ns(context)
    tags = dict(context.run.tags)
    # Portfolio rows depend on every site: a site-scoped run still recomputes them whole.
    site = None if spec.scope == "portfolio" else scoped_site(tags)
    config = store.load_config()
    with store.open() as s:
        partials = compute_rollup(spec, s, start, end, site)
        rows = with_work_hours(partials, config, spec.scope)
        kept = kept_windows(spec, s, config, start, end, rows, site_id=site, now_ns=time.time_ns())
        written = 0
        for a, b in replace_ranges(start, end, kept, spec.width_ns):
            part = rows.filter(pl.col("window_start").is_between(a, b, closed="left"))
            written += s.replace_rollups(spec.level, a, b, part, site_id=site)
    if kept:
        context.log.warning(
            f"{spec.level}: kept {len(kept)} window(s) as stored: their source was deleted by "
            "retention, so a recomputation would have replaced them with nothing"
        )
    keys = context.partition_keys
    per_window = window_metadata(
        rows,
        windows=[parse_partition_key(k) for k in keys],
        config=config,
        scope=spec.scope,
        site=site,
        late=late_points(tags),
    )
    for key in keys:
        context.add_asset_metadata(per_window[parse_partition_key(key)], partition_key=key)
    context.log.info(
        f"{spec.level}: replaced {written} rows in {len(keys)} partition(s)"
        + (f" of site {site}" if site else "")
    )
    return dg.MaterializeResult(
        metadata={"partitions_in_run": len(keys), "windows_kept_after_retention": len(kept)}
    )


def build_rollup_asset(
    spec: RollupSpec, partitions: dg.PartitionsDefinition, store_kind: str
) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.asset,
        partitions_def=partitions,
        deps=[dg.AssetKey(spec.parent) if spec.parent else RAW_POINTS],
        group_name="rollups",
        pool=TSDB_POOL,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
        kinds={"polars", store_kind},
        description=describe(spec),
    )
    def _asset(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
        return _run(context, store, spec)

    return _asset


def build_rollup_assets(
    partitions: dict[str, dg.TimeWindowPartitionsDefinition], store_kind: str
) -> list[dg.AssetsDefinition]:
    """Every rollup asset, in ``ROLLUP_SPECS`` order, on its grain's partitions."""
    return [build_rollup_asset(s, partitions[s.grain], store_kind) for s in ROLLUP_SPECS]
