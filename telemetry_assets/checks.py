"""Asset checks, built from ``ROLLUP_SPECS``: pandera schemas, reconciliation, completeness.

* ``<asset>_schema_valid``: types, keys not null and unique, windows aligned to their
  boundary, count >= 1, min <= mean <= max, delta fields >= 0 (``rollup_schema``).
* Reconciliation, one per level (the spec row names it). Two kinds, and the descriptions
  say which is which:
  - the raw level is checked against an *independent* computation, while the asset used
    the store's own aggregation (``aggregate_raw``: SQL or InfluxQL): on SQLite a recount
    written apart from it (``SqliteStore.recount_raw``: per-window range statements,
    first/last by primary-key lookup, names joined in polars); on other stores the raw
    points read back and rolled up in polars (``rollup_raw``);
  - a merged level is checked for *consistency* with its stored parent, recomputed with
    the same ``combine`` the asset runs. That catches levels drifting apart (rows lost or
    altered in the store, a parent rewritten without its children), not a bug in
    ``combine`` itself: tests/core/test_rollup_maths.py checks that against hand-computed
    values.
* ``rollup_15m_devices_complete`` WARNs: a missing device is a fact about the building
  (a meter offline), not a broken pipeline, so it must not block anything downstream.

Every check sets ``partitions_def`` (without it a check loads every partition). In a
backfill run that covers a range, Dagster runs the check once for the whole range; the
check then validates the whole range, and no automation is gated on checks.
"""

from collections.abc import Callable, Sequence
from typing import Any, cast

import dagster as dg
import polars as pl

from telemetry_assets.assets.common import time_range_ns
from telemetry_assets.names import TSDB_POOL
from telemetry_assets.resources import TelemetryStore
from telemetry_assets.rollup_schema import KEYS, REL_TOL, md_table, validate_rows
from telemetry_core.config import Config
from telemetry_core.rollup import (
    ROLLUP_SPECS,
    SPECS_BY_ASSET,
    RollupSpec,
    combine,
    spec_for,
)
from telemetry_core.store.base import ALL, PARTIAL_COLUMNS, Store
from telemetry_core.windows import WINDOW_15M_NS

CheckFn = Callable[[Store, Config, int, int], dg.AssetCheckResult]


def mismatches(
    actual: pl.DataFrame, expected: pl.DataFrame, columns: Sequence[str]
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
    actual: pl.DataFrame, expected: pl.DataFrame, columns: Sequence[str], source: str
) -> dg.AssetCheckResult:
    diff = mismatches(actual, expected, columns)
    metadata: dict[str, Any] = {
        "rows_checked": actual.height,
        "rows_expected": expected.height,
        "mismatched_rows": diff.height,
        "compared_with": source,
    }
    if diff.height:
        metadata["mismatches"] = md_table(diff)
    return dg.AssetCheckResult(passed=diff.height == 0, metadata=metadata)


RAW_SOURCE = "raw points, recounted by the store apart from aggregate_raw (recount_raw)"


def describe_reconciliation(spec: RollupSpec) -> tuple[str, str]:
    """(check description, short ``compared_with`` metadata) — honest about independence."""
    if spec.parent is None:
        return (
            f"Independent recomputation: every partial (count, sum, min, max, first, last "
            f"and their times) of each {spec.grain} window and series is recomputed from "
            "the raw points and compared with the stored rows, which the asset took from "
            "the store's own aggregation (aggregate_raw). On SQLite by a recount written "
            "apart from aggregate_raw (recount_raw: one range statement per window, first "
            "and last by primary-key lookup, names joined in polars), so a row dropped or "
            "a boundary point put in the wrong window by aggregate_raw, a first/last taken "
            "from the wrong point or a series given the wrong names fails it; on other "
            "stores in polars from the points read back (scan_points + rollup_raw).",
            RAW_SOURCE,
        )
    parent = SPECS_BY_ASSET[spec.parent]
    return (
        f"Consistency with {parent.asset}, not an independent proof: each row is recomputed "
        f"from the stored `{parent.level}` rows with the same combine() the asset runs. "
        f"Catches levels that drifted apart (rows lost or altered in the store, "
        f"{parent.asset} rewritten without {spec.asset}), not a mistake in combine() itself "
        "(tests/core/test_rollup_maths.py checks that against hand-computed values).",
        f"stored {parent.level} rows merged by combine() (same maths as the asset)",
    )


def reconciliation_fn(spec: RollupSpec) -> CheckFn:
    _, source = describe_reconciliation(spec)

    def fn(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
        actual = s.read_rollups(spec.level, start, end)
        if spec.parent is None:
            expected = s.recount_raw(start, end, spec.width_ns)
            return reconcile(actual, expected, PARTIAL_COLUMNS, RAW_SOURCE)
        else:
            parent_rows = s.read_rollups(SPECS_BY_ASSET[spec.parent].level, start, end)
            expected = combine(parent_rows, spec.width_ns, spec.scope)
        return reconcile(actual, expected, PARTIAL_COLUMNS, source)

    return fn


def schema_fn(spec: RollupSpec) -> CheckFn:
    def fn(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
        return validate_rows(s.read_rollups(spec.level, start, end), spec.width_ns, config)

    return fn


def devices_complete(s: Store, config: Config, start: int, end: int) -> dg.AssetCheckResult:
    expected = {x.site_id: x.expected_devices for x in config.sites.values() if x.expected_devices}
    if not expected:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no site sets expected_devices"},
        )
    rows = s.read_rollups(COMPLETENESS_SPEC.level, start, end)
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
    metadata: dict[str, Any] = {
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
        metadata["incomplete"] = md_table(short)
    return dg.AssetCheckResult(
        passed=short.height == 0, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
    )


COMPLETENESS_SPEC = spec_for("15m", "device")
COMPLETENESS_CHECK = f"{COMPLETENESS_SPEC.asset}_devices_complete"
SCHEMA_TEXT = (
    "pandera schema of the `{level}` rows (types, keys not null and unique, windows on "
    "their boundary, count >= 1, min <= mean <= max, delta fields >= 0)"
)


def _check_table() -> dict[str, tuple[str, str, CheckFn]]:
    """check name -> (asset, description, function), every check of every level."""
    table: dict[str, tuple[str, str, CheckFn]] = {}
    for spec in ROLLUP_SPECS:
        table[f"{spec.asset}_schema_valid"] = (
            spec.asset,
            SCHEMA_TEXT.format(level=spec.level),
            schema_fn(spec),
        )
        table[spec.check] = (spec.asset, describe_reconciliation(spec)[0], reconciliation_fn(spec))
    table[COMPLETENESS_CHECK] = (
        COMPLETENESS_SPEC.asset,
        "devices reporting vs expected_devices per site and window (warns, never blocks)",
        devices_complete,
    )
    return table


CHECKS = _check_table()
# The plain functions behind every check, by name: (store, config, start, end) -> result.
CHECK_FUNCTIONS: dict[str, CheckFn] = {name: fn for name, (_, _, fn) in CHECKS.items()}


class _ReadsOnce:
    """The store as one check step sees it: each rollup read happens once and is shared by
    the asset's checks (they only read, and polars frames are immutable). A week's
    ``rollup_15m`` rows are read by three checks: ~1 s each time."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._rollups: dict[tuple, pl.DataFrame] = {}

    @property
    def store(self) -> Store:
        return self._store

    def read_rollups(self, level: str, start: int, end: int, **filters) -> pl.DataFrame:
        key = (level, start, end, tuple(sorted(filters.items())))
        if key not in self._rollups:
            self._rollups[key] = self._store.read_rollups(level, start, end, **filters)
        return self._rollups[key]

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def _as_checks(
    asset: dg.AssetsDefinition, checks: Sequence[tuple[str, str, CheckFn]]
) -> dg.AssetChecksDefinition:
    """Every check of one asset as one step: a backfill run pays the step overhead and
    each read of the stored rows once per asset, not once per check. Each check still
    records its own result (and can be selected alone)."""
    specs = [
        dg.AssetCheckSpec(
            name, asset=asset.key, description=description, partitions_def=asset.partitions_def
        )
        for name, description, _ in checks
    ]
    functions = {name: fn for name, _, fn in checks}

    @dg.multi_asset_check(
        name=f"{asset.key.to_python_identifier()}_checks",
        specs=specs,
        can_subset=True,
        pool=TSDB_POOL,  # checks query the store too
    )
    def _checks(context: dg.AssetCheckExecutionContext, store: TelemetryStore):
        start, end = time_range_ns(context)
        config = store.load_config()
        selected = {key.name for key in context.selected_asset_check_keys}
        with store.open() as s:
            shared = cast(Store, _ReadsOnce(s))
            for name, fn in functions.items():
                if name in selected:
                    result = fn(shared, config, start, end)
                    yield dg.AssetCheckResult(
                        asset_key=asset.key,
                        check_name=name,
                        passed=result.passed,
                        severity=result.severity,
                        metadata=result.metadata,
                    )

    return _checks


def build_checks(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    """Every check, attached to the rollup assets built for this code location (one check
    step per asset)."""
    by_name = {a.key.to_user_string(): a for a in assets}
    grouped: dict[str, list[tuple[str, str, CheckFn]]] = {}
    for name, (asset, description, fn) in CHECKS.items():
        grouped.setdefault(asset, []).append((name, description, fn))
    return [_as_checks(by_name[asset], checks) for asset, checks in grouped.items()]
