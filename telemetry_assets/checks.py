"""Asset checks: pandera (polars) schemas, reconciliation, completeness.

* ``<asset>_schema_valid``: types, keys not null and unique, windows aligned to their
  boundary, count >= 1, min <= mean <= max, delta fields >= 0 (pandera.polars, lazy, so
  every failing row is reported, in the check's metadata).
* Reconciliation — each level equals a recomputation from its source: 15-minute rows vs the
  raw points (counts, sums, min, max), an hour vs its four quarters, a site vs its devices,
  the portfolio vs its sites.
* ``rollup_15m_devices_complete`` WARNs: a missing device is a fact about the building
  (a meter offline), not a broken pipeline, so it must not block anything downstream.

Every check sets ``partitions_def`` (without it a check loads every partition). In a
backfill run that covers a range, Dagster runs the check once for the whole range; the
check then validates the whole range, and no automation is gated on checks.
"""

from collections.abc import Callable

import dagster as dg
import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from telemetry_assets.assets import rollups as r
from telemetry_assets.assets.common import TSDB_POOL, time_range_ns
from telemetry_assets.resources import TelemetryStore
from telemetry_core.config import Config
from telemetry_core.rollup import combine
from telemetry_core.store.base import ALL, KEY_COLUMNS, PARTIAL_COLUMNS, Store
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

KEYS = ["window_start", *KEY_COLUMNS]
SHOW_ROWS = 20  # failing rows shown in metadata
REL_TOL = 1e-9


def rollup_schema(width_ns: int, delta_fields: list[str]) -> pa.DataFrameSchema:
    """The contract of every stored rollup level."""

    def aligned(data) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("window_start") % width_ns == 0).alias("ok"))

    def mean_within(data) -> pl.LazyFrame:
        mean = pl.col("sum") / pl.col("count")
        slack = REL_TOL * (pl.col("min").abs() + pl.col("max").abs() + 1.0)
        ok = (pl.col("min") - slack <= mean) & (mean <= pl.col("max") + slack)
        return data.lazyframe.select(ok.fill_null(False).alias("ok"))

    def delta_non_negative(data) -> pl.LazyFrame:
        key = pl.concat_str(["measurement", pl.lit("."), "field"])
        ok = ~key.is_in(delta_fields) | (pl.col("min") >= 0)
        return data.lazyframe.select(ok.alias("ok"))

    text = {"nullable": False}
    return pa.DataFrameSchema(
        {
            "window_start": pa.Column(pl.Int64, nullable=False),
            "measurement": pa.Column(pl.String, **text),
            "site_id": pa.Column(pl.String, **text),
            "device_id": pa.Column(pl.String, **text),
            "field": pa.Column(pl.String, **text),
            "count": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
            "sum": pa.Column(pl.Float64, nullable=False),
            "min": pa.Column(pl.Float64, nullable=False),
            "max": pa.Column(pl.Float64, nullable=False),
            "first": pa.Column(pl.Float64, nullable=False),
            "last": pa.Column(pl.Float64, nullable=False),
            "first_time": pa.Column(pl.Int64, nullable=False),
            "last_time": pa.Column(pl.Int64, nullable=False),
            "is_work_hours": pa.Column(pl.Boolean, nullable=True),
        },
        unique=KEYS,
        strict=True,
        checks=[
            pa.Check(aligned, name="window_aligned", error="window_start not on a boundary"),
            pa.Check(mean_within, name="min_le_mean_le_max", error="mean outside [min, max]"),
            pa.Check(delta_non_negative, name="delta_non_negative", error="delta value < 0"),
        ],
    )


def _md_table(frame: pl.DataFrame) -> dg.MetadataValue:
    head = frame.head(SHOW_ROWS)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in head.iter_rows()]
    return dg.MetadataValue.md("\n".join(lines))


def validate_rows(rows: pl.DataFrame, width_ns: int, config: Config) -> dg.AssetCheckResult:
    deltas = [key for key, kind in config.fields.items() if kind == "delta"]
    try:
        rollup_schema(width_ns, deltas).validate(rows, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        bad = sorted({i for i in cases["index"].to_list() if i is not None})
        failing = rows.with_row_index("index").filter(pl.col("index").is_in(bad))
        return dg.AssetCheckResult(
            passed=False,
            metadata={
                "rows_checked": rows.height,
                "failing_rows": len(bad),
                "failure_cases": _md_table(
                    cases.select("check", "column", "failure_case", "index")
                ),
                "failing_row_values": _md_table(failing),
            },
        )
    return dg.AssetCheckResult(passed=True, metadata={"rows_checked": rows.height})


def mismatches(
    actual: pl.DataFrame, expected: pl.DataFrame, columns: tuple[str, ...]
) -> pl.DataFrame:
    """Rows missing on either side, or whose partials differ (floats to 1e-9 relative)."""
    a = actual.select(*KEYS, *columns)
    e = expected.select(*KEYS, *columns)
    joined = a.join(e, on=KEYS, how="full", coalesce=True, suffix="_expected")
    bad = pl.lit(False)
    for col in columns:
        x, y = pl.col(col), pl.col(f"{col}_expected")
        if actual.schema[col] == pl.Float64:
            differs = (x - y).abs() > REL_TOL * (x.abs() + y.abs() + 1.0)
        else:
            differs = x != y
        bad = bad | differs.fill_null(True)
    return joined.filter(bad).sort(KEYS)


def reconcile(
    actual: pl.DataFrame, expected: pl.DataFrame, columns: tuple[str, ...], source: str
) -> dg.AssetCheckResult:
    diff = mismatches(actual, expected, columns)
    metadata: dict[str, object] = {
        "rows_checked": actual.height,
        "rows_expected": expected.height,
        "mismatched_rows": diff.height,
        "compared_with": source,
    }
    if diff.height:
        metadata["mismatches"] = _md_table(diff)
    return dg.AssetCheckResult(passed=diff.height == 0, metadata=metadata)


# Plain functions behind every check, by check name: (store, config, start, end) -> result.
# The asset checks below only resolve the run's window range and call them.
CHECK_FUNCTIONS: dict[str, Callable[[Store, Config, int, int], dg.AssetCheckResult]] = {}


def _as_check(asset: dg.AssetsDefinition, name: str, description: str, fn, **kwargs):
    CHECK_FUNCTIONS[name] = fn

    @dg.asset_check(
        asset=asset,
        name=name,
        partitions_def=asset.partitions_def,
        description=description,
        pool=TSDB_POOL,  # checks query the store too
        **kwargs,
    )
    def _check(context: dg.AssetCheckExecutionContext, store: TelemetryStore):
        start, end = time_range_ns(context)
        config = store.load_config()
        with store.open() as s:
            return fn(s, config, start, end)

    return _check


def _schema_check(asset: dg.AssetsDefinition, width_ns: int) -> dg.AssetChecksDefinition:
    level = r.LEVEL_OF[asset.key.path[-1]]

    def fn(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
        return validate_rows(s.read_rollups(level, start, end), width_ns, config)

    return _as_check(
        asset,
        f"{asset.key.path[-1]}_schema_valid",
        f"pandera schema of the {level} rollup rows (types, keys, boundaries, "
        "count >= 1, min <= mean <= max, delta fields >= 0)",
        fn,
    )


def _reconcile_check(
    asset: dg.AssetsDefinition, name: str, description: str, expected_of, columns
) -> dg.AssetChecksDefinition:
    level = r.LEVEL_OF[asset.key.path[-1]]

    def fn(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
        actual = s.read_rollups(level, start, end)
        return reconcile(actual, expected_of(s, start, end), columns, description)

    return _as_check(asset, name, description, fn)


_ALL_PARTIALS = PARTIAL_COLUMNS
_RAW = ("count", "sum", "min", "max")

RECONCILIATION = [
    _reconcile_check(
        r.rollup_15m,
        "rollup_15m_matches_raw_counts",
        "15-minute rows vs the raw points of their windows (count, sum, min, max)",
        lambda s, a, b: s.aggregate_raw(a, b, WINDOW_15M_NS),
        _RAW,
    ),
    _reconcile_check(
        r.rollup_1h,
        "rollup_1h_matches_quarters",
        "each hour vs the merge of its four 15-minute rows",
        lambda s, a, b: combine(s.read_rollups("15m", a, b), HOUR_NS, "device"),
        _ALL_PARTIALS,
    ),
    _reconcile_check(
        r.site_15m,
        "site_15m_matches_devices",
        "each site's 15-minute row vs the merge of its devices",
        lambda s, a, b: combine(s.read_rollups("15m", a, b), WINDOW_15M_NS, "site"),
        _ALL_PARTIALS,
    ),
    _reconcile_check(
        r.site_1h,
        "site_1h_matches_devices",
        "each site's hourly row vs the merge of its devices",
        lambda s, a, b: combine(s.read_rollups("1h", a, b), HOUR_NS, "site"),
        _ALL_PARTIALS,
    ),
    _reconcile_check(
        r.portfolio_15m,
        "portfolio_15m_matches_sites",
        "the portfolio's 15-minute rows vs the merge of its sites",
        lambda s, a, b: combine(s.read_rollups("site_15m", a, b), WINDOW_15M_NS, "portfolio"),
        _ALL_PARTIALS,
    ),
    _reconcile_check(
        r.portfolio_1h,
        "portfolio_1h_matches_sites",
        "the portfolio's hourly rows vs the merge of its sites",
        lambda s, a, b: combine(s.read_rollups("site_1h", a, b), HOUR_NS, "portfolio"),
        _ALL_PARTIALS,
    ),
]

SCHEMA_CHECKS = [
    _schema_check(asset, WINDOW_15M_NS if asset in r.QUARTER_HOUR_ASSETS else HOUR_NS)
    for asset in r.ROLLUP_ASSETS
]


def devices_complete(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
    expected = {x.site_id: x.expected_devices for x in config.sites.values() if x.expected_devices}
    if not expected:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no site sets expected_devices"},
        )
    rows = s.read_rollups("15m", start, end)
    windows = pl.DataFrame({"window_start": list(range(start, end, WINDOW_15M_NS))})
    sites = pl.DataFrame({"site_id": list(expected), "expected": list(expected.values())})
    seen = (
        rows.filter(pl.col("device_id") != ALL)
        .group_by("window_start", "site_id")
        .agg(pl.col("device_id").n_unique().alias("reporting"))
    )
    grid = (
        windows.join(sites, how="cross")
        .join(seen, on=["window_start", "site_id"], how="left")
        .with_columns(pl.col("reporting").fill_null(0).cast(pl.Int64))
    )
    short = grid.filter(pl.col("reporting") < pl.col("expected")).sort("window_start", "site_id")
    reporting = int(grid["reporting"].sum())
    total = int(grid["expected"].sum())
    metadata: dict[str, object] = {
        "devices_expected": int(sum(expected.values())),
        "devices_reporting": int(
            rows.filter(pl.col("site_id").is_in(list(expected)))
            .select("site_id", "device_id")
            .unique()
            .height
        ),
        "completeness_pct": round(100.0 * min(reporting, total) / total, 3) if total else 100.0,
        "incomplete_windows": short.height,
    }
    if short.height:
        metadata["incomplete"] = _md_table(short)
    return dg.AssetCheckResult(
        passed=short.height == 0, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
    )


rollup_15m_devices_complete = _as_check(
    r.rollup_15m,
    "rollup_15m_devices_complete",
    "devices reporting vs expected_devices per site and window (warns, never blocks)",
    devices_complete,
)


ALL_CHECKS = [*SCHEMA_CHECKS, *RECONCILIATION, rollup_15m_devices_complete]
