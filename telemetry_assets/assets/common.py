"""What every rollup asset shares: its time range, its site scope, its metadata."""

from __future__ import annotations

import dagster as dg
import polars as pl

from telemetry_core.config import Config
from telemetry_core.identifiers import IdentifierError, check_name
from telemetry_core.rollup import headline
from telemetry_core.store.base import ALL
from telemetry_core.timeutil import from_datetime

# A run tagged with a site rewrites only that site's rows (a site-scoped backfill after
# one site's outage must not touch the others). Portfolio assets ignore it: the portfolio
# depends on every site, so it is always recomputed whole.
SITE_TAG = "telemetry/site"
# Set by the late-data sensor: how many late points the run folds in (for the UI plots).
LATE_POINTS_TAG = "telemetry/late_points"
# Set by the late-data sensor on every run of one batch, so it can find them again.
LATE_BATCH_TAG = "telemetry/late_batch"
TSDB_POOL = "tsdb"
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


def summarize(
    rows: pl.DataFrame,
    *,
    width_ns: int,
    start_ns: int,
    end_ns: int,
    config: Config,
    scope: str,
    site: str | None,
    late: int,
) -> dict[str, int | float | str]:
    """Numeric metadata the UI plots per partition: rows, devices, completeness, totals."""
    windows = max(1, (end_ns - start_ns) // width_ns)
    md: dict[str, int | float | str] = {
        "rows": rows.height,
        "windows": windows,
        "points": int(rows["count"].sum() or 0) if rows.height else 0,
        "sites": rows.filter(pl.col("site_id") != ALL)["site_id"].n_unique() if rows.height else 0,
        "late_points": late,
    }
    if scope == "device":
        md["devices_reporting"] = (
            rows.select("site_id", "device_id").unique().height if rows.height else 0
        )
        expected = {
            s.site_id: s.expected_devices
            for s in config.sites.values()
            if s.expected_devices and (site is None or s.site_id == site)
        }
        if expected:
            total = sum(expected.values())
            seen = (
                rows.filter(pl.col("site_id").is_in(list(expected)))
                .select("window_start", "site_id", "device_id")
                .unique()
                .height
            )
            md["devices_expected"] = total
            md["completeness_pct"] = round(
                100.0 * min(seen, total * windows) / (total * windows), 3
            )
    if site is not None:
        md["scoped_site"] = site
    if rows.height:
        totals = (
            rows.group_by("measurement", "field")
            .agg(pl.col("count").sum(), pl.col("sum").sum())
            .sort("measurement", "field")
            .head(MAX_TOTALS)
        )
        for m, f, count, total in totals.iter_rows():
            kind = config.field_kind(m, f)
            if headline(kind) == "sum":
                md[f"{m}.{f}.sum"] = float(total)
            else:
                md[f"{m}.{f}.mean"] = float(total / count) if count else 0.0
    return md
