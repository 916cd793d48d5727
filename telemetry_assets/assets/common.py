"""What every rollup asset shares: its time range, its site scope, its metadata."""

from __future__ import annotations

import dagster as dg
import polars as pl

from telemetry_assets.names import LATE_POINTS_TAG, SITE_TAG
from telemetry_core.config import Config
from telemetry_core.identifiers import IdentifierError, check_name
from telemetry_core.rollup import headline
from telemetry_core.store.base import ALL
from telemetry_core.timeutil import from_datetime

MAX_TOTALS = 24  # headline totals per materialisation (keeps metadata readable)


def time_range_ns(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> tuple[int, int]:
    """The run's whole window range, ``[start, end)`` in ns (one partition or many)."""
    window = context.partition_time_window
    return from_datetime(window.start), from_datetime(window.end)


def scoped_site(tags: dict[str, str] | None) -> str | None:
    """The site a run is scoped to, validated (it ends up in a store query)."""
    site = (tags or {}).get(SITE_TAG) or None
    if site is None:
        return None
    try:
        return check_name(site, "site id")
    except IdentifierError as exc:
        raise dg.Failure(f"run tag {SITE_TAG}: {exc}") from None


def late_points(tags: dict[str, str] | None) -> int:
    try:
        return max(0, int((tags or {}).get(LATE_POINTS_TAG, "0")))
    except ValueError:
        return 0


def expected_devices(config: Config, site: str | None) -> dict[str, int]:
    return {
        s.site_id: s.expected_devices
        for s in config.sites.values()
        if s.expected_devices and (site is None or s.site_id == site)
    }


def window_metadata(
    rows: pl.DataFrame,
    *,
    windows: list[int],
    config: Config,
    scope: str,
    site: str | None,
    late: int,
) -> dict[int, dict[str, int | float | str]]:
    """Numeric metadata per window (one per partition, so the UI plots each partition's
    own figures even when a backfill run covers hundreds): rows, points, sites, devices
    reporting vs expected, completeness, late points, a headline total per field."""
    expected = expected_devices(config, site) if scope == "device" else {}
    total_expected = sum(expected.values())
    out: dict[int, dict[str, int | float | str]] = {}
    for ws in windows:
        md: dict[str, int | float | str] = {"rows": 0, "points": 0, "sites": 0, "late_points": late}
        if scope == "device":
            md["devices_reporting"] = 0
            if expected:
                md["devices_expected"] = total_expected
                md["completeness_pct"] = 0.0
        if site is not None:
            md["scoped_site"] = site
        out[ws] = md
    if rows.height == 0:
        return out
    device = pl.struct("site_id", "device_id")
    agg = rows.group_by("window_start").agg(
        pl.len().alias("rows"),
        pl.col("count").sum().alias("points"),
        pl.col("site_id").filter(pl.col("site_id") != ALL).n_unique().alias("sites"),
        device.n_unique().alias("devices"),
        device.filter(pl.col("site_id").is_in(list(expected))).n_unique().alias("seen"),
    )
    for ws, n_rows, points, sites, devices, seen in agg.iter_rows():
        if ws not in out:
            continue
        md = out[ws]
        md.update(rows=int(n_rows), points=int(points), sites=int(sites))
        if scope == "device":
            md["devices_reporting"] = int(devices)
            if expected:
                md["completeness_pct"] = round(
                    100.0 * min(seen, total_expected) / total_expected, 3
                )
    fields = rows.select("measurement", "field").unique().sort("measurement", "field")
    keep = fields.head(MAX_TOTALS)
    totals = (
        rows.join(keep, on=["measurement", "field"])
        .group_by("window_start", "measurement", "field")
        .agg(pl.col("count").sum(), pl.col("sum").sum())
    )
    for ws, m, f, count, total in totals.iter_rows():
        if ws not in out:
            continue
        md = out[ws]
        if headline(config.field_kind(m, f)) == "sum":
            md[f"{m}.{f}.sum"] = float(total)
        else:
            md[f"{m}.{f}.mean"] = float(total / count) if count else 0.0
    return out
