"""Rollup maths: mergeable partials, never averages of averages.

Every rollup row keeps ``count, sum, min, max, first, last, first_time, last_time``; a
coarser window or a wider scope is *combined* from finer rows, so an hour equals its four
quarters and a site equals its devices exactly (up to float summation order).

Ties: at site/portfolio scope ``first`` follows the earliest reading and ``last`` the
latest; readings with the same timestamp on several devices are ordered by
(site_id, device_id), so results are deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from telemetry_core.store.base import ALL, KEY_COLUMNS, PARTIAL_SCHEMA, ROLLUP_COLUMNS

if TYPE_CHECKING:
    from telemetry_core.config import Config

SCOPES = ("device", "site", "portfolio")


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
