"""The rollup graph: raw_points → rollup_15m → rollup_1h, and site/portfolio rollups.

Every asset is range-aware: a run covers ``context.partition_time_window`` (one partition
or a whole backfill chunk), reads its inputs from the store, and *replaces* every row of
its windows in one commit, so a re-run after late data or a backfill is idempotent. Rows
are written inside the asset and a ``MaterializeResult`` is returned: no IO manager (the
polars parquet IO manager cannot read under polars 2.x, nor persist one output spanning
several partitions).

Partials are merged, never averaged: hourly rows combine the four quarters, site rows
combine the site's device rows, portfolio rows combine the site rows.
"""

from collections.abc import Callable

import dagster as dg
import polars as pl

from telemetry_assets.assets.common import (
    TSDB_POOL,
    late_points,
    scoped_site,
    time_range_ns,
    window_metadata,
)
from telemetry_assets.assets.raw import raw_points
from telemetry_assets.partitions import hourly_partitions, quarter_hour_partitions
from telemetry_assets.resources import TelemetryStore
from telemetry_core.rollup import combine, with_work_hours
from telemetry_core.store.base import Store
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, parse_partition_key

# Partitions per backfill run: a week of quarters, four weeks of hours. Run overhead is
# seconds per run on this hardware, so one run per partition would make history
# backfills take hours; a chunk this size keeps one run's memory in the low hundreds of MB.
QUARTERS_PER_RUN = 672
HOURS_PER_RUN = 672

Compute = Callable[[Store, int, int, str | None], pl.DataFrame]


def _run(
    context: dg.AssetExecutionContext,
    store: TelemetryStore,
    *,
    level: str,
    scope: str,
    compute: Compute,
) -> dg.MaterializeResult:
    start, end = time_range_ns(context)
    tags = dict(context.run.tags)
    # Portfolio rows depend on every site: a site-scoped run still recomputes them whole.
    site = None if scope == "portfolio" else scoped_site(tags)
    config = store.load_config()
    with store.open() as s:
        partials = compute(s, start, end, site)
        rows = with_work_hours(partials, config, scope)
        written = s.replace_rollups(level, start, end, rows, site_id=site)
    keys = context.partition_keys
    per_window = window_metadata(
        rows,
        windows=[parse_partition_key(k) for k in keys],
        config=config,
        scope=scope,
        site=site,
        late=late_points(tags),
    )
    for key in keys:
        context.add_asset_metadata(per_window[parse_partition_key(key)], partition_key=key)
    context.log.info(
        f"{level}: replaced {written} rows in {len(keys)} partition(s)"
        + (f" of site {site}" if site else "")
    )
    return dg.MaterializeResult(metadata={"partitions_in_run": len(keys)})


def _quarters_policy() -> dg.BackfillPolicy:
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=QUARTERS_PER_RUN)


def _hours_policy() -> dg.BackfillPolicy:
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=HOURS_PER_RUN)


@dg.asset(
    partitions_def=quarter_hour_partitions,
    deps=[raw_points],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_quarters_policy(),
    kinds={"polars"},
)
def rollup_15m(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Per-device 15-minute partials of the raw points (count, sum, min, max, first, last)."""
    return _run(
        context,
        store,
        level="15m",
        scope="device",
        compute=lambda s, a, b, site: s.aggregate_raw(a, b, WINDOW_15M_NS, site_id=site),
    )


@dg.asset(
    partitions_def=hourly_partitions,
    deps=[rollup_15m],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_hours_policy(),
    kinds={"polars"},
)
def rollup_1h(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Per-device hourly partials, merged from the hour's four 15-minute rows."""
    return _run(
        context,
        store,
        level="1h",
        scope="device",
        compute=lambda s, a, b, site: combine(
            s.read_rollups("15m", a, b, site_id=site), HOUR_NS, "device"
        ),
    )


@dg.asset(
    partitions_def=quarter_hour_partitions,
    deps=[rollup_15m],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_quarters_policy(),
    kinds={"polars"},
)
def site_15m(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Per-site 15-minute partials across the site's devices (device_id "*")."""
    return _run(
        context,
        store,
        level="site_15m",
        scope="site",
        compute=lambda s, a, b, site: combine(
            s.read_rollups("15m", a, b, site_id=site), WINDOW_15M_NS, "site"
        ),
    )


@dg.asset(
    partitions_def=hourly_partitions,
    deps=[rollup_1h],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_hours_policy(),
    kinds={"polars"},
)
def site_1h(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Per-site hourly partials across the site's devices (device_id "*")."""
    return _run(
        context,
        store,
        level="site_1h",
        scope="site",
        compute=lambda s, a, b, site: combine(
            s.read_rollups("1h", a, b, site_id=site), HOUR_NS, "site"
        ),
    )


@dg.asset(
    partitions_def=quarter_hour_partitions,
    deps=[site_15m],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_quarters_policy(),
    kinds={"polars"},
)
def portfolio_15m(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Whole-portfolio 15-minute partials across all sites (site_id and device_id "*")."""
    return _run(
        context,
        store,
        level="portfolio_15m",
        scope="portfolio",
        compute=lambda s, a, b, _site: combine(
            s.read_rollups("site_15m", a, b), WINDOW_15M_NS, "portfolio"
        ),
    )


@dg.asset(
    partitions_def=hourly_partitions,
    deps=[site_1h],
    group_name="rollups",
    pool=TSDB_POOL,
    backfill_policy=_hours_policy(),
    kinds={"polars"},
)
def portfolio_1h(context: dg.AssetExecutionContext, store: TelemetryStore) -> dg.MaterializeResult:
    """Whole-portfolio hourly partials across all sites (site_id and device_id "*")."""
    return _run(
        context,
        store,
        level="portfolio_1h",
        scope="portfolio",
        compute=lambda s, a, b, _site: combine(
            s.read_rollups("site_1h", a, b), HOUR_NS, "portfolio"
        ),
    )


QUARTER_HOUR_ASSETS = (rollup_15m, site_15m, portfolio_15m)
HOURLY_ASSETS = (rollup_1h, site_1h, portfolio_1h)
ROLLUP_ASSETS = (*QUARTER_HOUR_ASSETS, *HOURLY_ASSETS)
# Store level written by each asset (checks and tests look rows up by asset).
LEVEL_OF = {
    "rollup_15m": "15m",
    "site_15m": "site_15m",
    "portfolio_15m": "portfolio_15m",
    "rollup_1h": "1h",
    "site_1h": "site_1h",
    "portfolio_1h": "portfolio_1h",
}
