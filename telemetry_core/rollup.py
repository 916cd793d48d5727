"""Rollup maths: mergeable partials, never averages of averages.

Every rollup row keeps ``count, sum, min, max, first, last, first_time, last_time``; a
coarser window or a wider scope is *combined* from finer rows, so an hour equals its four
quarters and a site equals its devices exactly (up to float summation order).

Ties: at site/portfolio scope ``first`` follows the earliest reading and ``last`` the
latest; readings with the same timestamp on several devices are ordered by
(site_id, device_id), so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from telemetry_core.store.base import (
    ALL,
    KEY_COLUMNS,
    PARTIAL_SCHEMA,
    ROLLUP_COLUMNS,
    check_level,
    level_width,
)
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS

if TYPE_CHECKING:
    from telemetry_core.config import Config
    from telemetry_core.store.base import Store

SCOPES = ("device", "site", "portfolio")
GRAINS = {WINDOW_15M_NS: "15m", HOUR_NS: "1h"}  # window width -> partition grain


@dataclass(frozen=True)
class RollupSpec:
    """One rollup level: the Dagster asset that writes it, the store level it writes, and
    where its rows come from. ``parent`` None means the raw points (aggregated by the
    store); otherwise the stored rows of the parent asset, merged by :func:`combine` into
    this level's window width and scope. ``check`` names its reconciliation check."""

    asset: str
    level: str
    parent: str | None
    scope: str
    check: str

    def __post_init__(self) -> None:
        check_level(self.level)
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")

    @property
    def width_ns(self) -> int:
        return level_width(self.level)

    @property
    def grain(self) -> str:
        """``15m`` or ``1h``: which partitions (and which rollup job) the asset belongs to."""
        return GRAINS[self.width_ns]

    @property
    def rule(self) -> str:
        """``raw``: aggregate the raw points; ``merge``: combine the parent's partials."""
        return "raw" if self.parent is None else "merge"


# The rollup graph, parents first. Assets, their checks, the rollup jobs, the backfill CLI
# and `telemetry query` all read this table: a new level is one row (and its store level).
ROLLUP_SPECS: tuple[RollupSpec, ...] = (
    RollupSpec("rollup_15m", "15m", None, "device", "rollup_15m_matches_raw_counts"),
    RollupSpec("site_15m", "site_15m", "rollup_15m", "site", "site_15m_matches_devices"),
    RollupSpec("portfolio_15m", "portfolio_15m", "site_15m", "portfolio", "portfolio_15m_matches_sites"),
    RollupSpec("rollup_1h", "1h", "rollup_15m", "device", "rollup_1h_matches_quarters"),
    RollupSpec("site_1h", "site_1h", "rollup_1h", "site", "site_1h_matches_devices"),
    RollupSpec("portfolio_1h", "portfolio_1h", "site_1h", "portfolio", "portfolio_1h_matches_sites"),
)  # fmt: skip
SPECS_BY_ASSET = {spec.asset: spec for spec in ROLLUP_SPECS}


def spec_for(grain: str, scope: str) -> RollupSpec:
    """The level holding ``scope`` rows at ``grain`` (what ``telemetry query`` reads)."""
    for spec in ROLLUP_SPECS:
        if spec.grain == grain and spec.scope == scope:
            return spec
    raise ValueError(f"no rollup level for {scope} scope at {grain}")


def compute_rollup(
    spec: RollupSpec, store: Store, start_ns: int, end_ns: int, site_id: str | None = None
) -> pl.DataFrame:
    """The partials of ``spec``'s windows in ``[start, end)`` (one site's, if given; the
    portfolio always spans every site), without ``is_work_hours``."""
    if spec.parent is None:
        return store.aggregate_raw(start_ns, end_ns, spec.width_ns, site_id=site_id)
    parent = SPECS_BY_ASSET[spec.parent]
    site = None if spec.scope == "portfolio" else site_id
    rows = store.read_rollups(parent.level, start_ns, end_ns, site_id=site)
    return combine(rows, spec.width_ns, spec.scope)


def _window(col: str, width_ns: int) -> pl.Expr:
    return (pl.col(col) - pl.col(col).mod(width_ns)).alias("window_start")


def rollup_raw(raw: pl.DataFrame, width_ns: int) -> pl.DataFrame:
    """Raw tall points -> per-series partials per window (the reference computation)."""
    keys = ["window_start", *KEY_COLUMNS]
    if raw.height == 0:
        return _empty_partials()
    return (
        raw.with_columns(_window("time", width_ns))
        .sort("time")
        .group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("value").sum().alias("sum"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
            pl.col("value").first().alias("first"),
            pl.col("value").last().alias("last"),
            pl.col("time").first().alias("first_time"),
            pl.col("time").last().alias("last_time"),
        )
        .sort(keys)
    )


RECOUNT_CHUNK_NS = DAY_NS  # points read back a day at a time: bounded memory in backfills


def recount_from_points(store: Store, start_ns: int, end_ns: int, width_ns: int) -> pl.DataFrame:
    """``Store.recount_raw`` for stores without a recount of their own: the points read
    back a day at a time (``scan_points``: the store only *reads* rows, its aggregation is
    not involved) and their partials recomputed here by ``rollup_raw``, which orders by time
    itself."""
    chunks = [
        rollup_raw(store.scan_points(a, min(a + RECOUNT_CHUNK_NS, end_ns)), width_ns)
        for a in range(start_ns, end_ns, RECOUNT_CHUNK_NS)
    ]
    if not chunks:
        return rollup_raw(store.scan_points(start_ns, start_ns), width_ns)
    return pl.concat(chunks)


def combine(partials: pl.DataFrame, width_ns: int, scope: str = "device") -> pl.DataFrame:
    """Merge partials into windows of ``width_ns`` at ``scope`` (device, site, portfolio)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if partials.height == 0:
        return _empty_partials()
    keys = ["window_start", *KEY_COLUMNS]
    tie = ["site_id", "device_id"]
    site = pl.lit(ALL) if scope == "portfolio" else pl.col("site_id")
    device = pl.col("device_id") if scope == "device" else pl.lit(ALL)
    result = (
        partials.with_columns(
            _window("window_start", width_ns).alias("_ws"),
            site.alias("_site"),
            device.alias("_device"),
        )
        .group_by(["_ws", "measurement", "_site", "_device", "field"])
        .agg(
            pl.col("count").sum().cast(pl.Int64),
            pl.col("sum").sum(),
            pl.col("min").min(),
            pl.col("max").max(),
            pl.col("first").sort_by(["first_time", *tie]).first(),
            pl.col("last").sort_by(["last_time", *tie]).last(),
            pl.col("first_time").min(),
            pl.col("last_time").max(),
        )
        .rename({"_ws": "window_start", "_site": "site_id", "_device": "device_id"})
    )
    return result.select(ROLLUP_COLUMNS[:-1]).sort(keys)


def with_work_hours(partials: pl.DataFrame, config: Config, scope: str = "device") -> pl.DataFrame:
    """Add ``is_work_hours`` from each site's time zone and hours (null for the portfolio)."""
    if scope == "portfolio" or partials.height == 0:
        return partials.with_columns(pl.lit(None, dtype=pl.Boolean).alias("is_work_hours"))
    pairs = partials.select("site_id", "window_start").unique()
    flags = [
        config.site(site).is_work_hours(ws)
        for site, ws in zip(
            pairs["site_id"].to_list(), pairs["window_start"].to_list(), strict=True
        )
    ]
    lookup = pairs.with_columns(pl.Series("is_work_hours", flags, dtype=pl.Boolean))
    return partials.join(lookup, on=["site_id", "window_start"], how="left")


def with_mean(rollups: pl.DataFrame) -> pl.DataFrame:
    return rollups.with_columns((pl.col("sum") / pl.col("count")).alias("mean"))


def headline(kind: str) -> str:
    """The column that answers 'how much' for a field kind; every partial is kept anyway."""
    return {"delta": "sum", "gauge": "mean", "state": "mean"}.get(kind, "mean")


def _empty_partials() -> pl.DataFrame:
    return pl.DataFrame(schema={name: getattr(pl, dtype) for name, dtype in PARTIAL_SCHEMA.items()})
