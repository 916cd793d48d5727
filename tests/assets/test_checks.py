"""Checks pass on good rollups and fail, naming the rows, on corrupted ones."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from telemetry_assets.checks import CHECK_FUNCTIONS
from telemetry_core.config import load_config
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS
from tests.assets.rollup_helpers import fleet_points, ns, run_all

START = ns("2026-11-20T06:00:00Z")
Q = START + WINDOW_15M_NS  # the corrupted quarter
RANGE = dict(
    q_start="2026-11-20-06:00",
    q_end="2026-11-20-06:45",
    h_start="2026-11-20-06:00",
    h_end="2026-11-20-06:00",
)

FIFTEEN = (Q, Q + WINDOW_15M_NS)
HOUR = (START, START + HOUR_NS)


def run_checks(store, window: tuple[int, int], prefix: str) -> dict[str, dg.AssetCheckResult]:
    """Every check of one grain, called the way the asset checks call it."""
    config = load_config()
    names = [n for n in CHECK_FUNCTIONS if n.startswith(prefix) or prefix in n]
    return {n: CHECK_FUNCTIONS[n](store, config, *window) for n in names}


def quarter_checks(store):
    return run_checks(store, FIFTEEN, "15m")


def hour_checks(store):
    return run_checks(store, HOUR, "1h")


@pytest.fixture
def rolled(defs, instance, store):
    store.write_points(fleet_points(START, 1))
    run_all(defs, instance, **RANGE)
    return store


def corrupt(store, level: str, window: int, width: int, change) -> None:
    rows = store.read_rollups(level, window, window + width)
    store.replace_rollups(level, window, window + width, change(rows))


def test_good_rollups_pass_every_check(rolled):
    results = quarter_checks(rolled) | hour_checks(rolled)
    assert len(results) == 13
    assert all(e.passed for e in results.values()), {
        n: e.metadata for n, e in results.items() if not e.passed
    }


def test_checks_run_inside_the_rollup_jobs(defs, instance, store):
    store.write_points(fleet_points(START, 1))
    result = defs.resolve_job_def("rollup_1h_job").execute_in_process(
        instance=instance, partition_key="2026-11-20-06:00"
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 6
    # no quarters were rolled up yet: the hour is empty and consistent with them
    assert all(e.passed for e in evaluations)
    # the 15-minute job's checks see the raw points it just rolled up
    result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
        instance=instance, partition_key="2026-11-20-06:15"
    )
    names = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert names["rollup_15m_matches_raw_counts"] is True
    assert len(names) == 7


def test_schema_check_names_failing_rows(rolled):
    def break_rows(rows: pl.DataFrame) -> pl.DataFrame:
        first = (pl.col("device_id") == "m1") & (pl.col("field") == "power_w")
        return rows.with_columns(
            pl.when(first & (pl.col("site_id") == "site-a"))
            .then(pl.col("max") - 1000.0)  # mean above max
            .otherwise(pl.col("max"))
            .alias("max"),
            pl.when((pl.col("field") == "energy_kwh") & (pl.col("site_id") == "site-b"))
            .then(-1.0)  # a delta field below zero
            .otherwise(pl.col("min"))
            .alias("min"),
        )

    corrupt(rolled, "15m", Q, WINDOW_15M_NS, break_rows)
    results = quarter_checks(rolled)
    schema = results["rollup_15m_schema_valid"]
    assert not schema.passed
    md = {k: v.value for k, v in schema.metadata.items()}
    assert md["failing_rows"] == 4  # site-a m1 power_w, site-b m1..m3 energy_kwh
    assert "mean outside [min, max]" in md["failure_cases"]
    assert "delta value < 0" in md["failure_cases"]
    assert "site-b" in md["failing_row_values"]
    # the reconciliation sees the changed min/max too; other assets' checks are unaffected
    assert not results["rollup_15m_matches_raw_counts"].passed
    assert results["portfolio_15m_matches_sites"].passed


def test_reconciliation_15m_vs_raw(rolled):
    corrupt(
        rolled,
        "15m",
        Q,
        WINDOW_15M_NS,
        lambda r: r.filter(pl.col("device_id") != "m2"),  # rows lost
    )
    results = quarter_checks(rolled)
    check = results["rollup_15m_matches_raw_counts"]
    assert not check.passed
    assert check.metadata["mismatched_rows"].value == 4  # m2 of 2 sites x 2 fields
    assert "m2" in check.metadata["mismatches"].value
    assert results["rollup_15m_schema_valid"].passed


def test_reconciliation_hour_site_portfolio(rolled):
    bump = lambda r: r.with_columns(pl.col("sum") + 0.001)  # noqa: E731
    corrupt(rolled, "1h", START, HOUR_NS, lambda r: r.head(1).pipe(bump).vstack(r.slice(1)))
    corrupt(rolled, "site_1h", START, HOUR_NS, lambda r: r.slice(1))  # a site row missing
    corrupt(rolled, "portfolio_1h", START, HOUR_NS, bump)
    results = hour_checks(rolled)
    assert not results["rollup_1h_matches_quarters"].passed
    assert results["rollup_1h_matches_quarters"].metadata["mismatched_rows"].value == 1
    assert not results["site_1h_matches_devices"].passed
    assert not results["portfolio_1h_matches_sites"].passed
    assert results["rollup_1h_schema_valid"].passed


def test_completeness_warns_when_a_device_is_missing(defs, instance, store):
    points = [p for p in fleet_points(START, 1) if not (p[1] == "site-a" and p[2] == "m3")]
    store.write_points(points)
    run_all(defs, instance, **RANGE)
    results = quarter_checks(store)
    check = results["rollup_15m_devices_complete"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    md = {k: v.value for k, v in check.metadata.items()}
    assert md["devices_expected"] == 3 and md["devices_reporting"] == 2
    assert md["incomplete_windows"] == 1


def test_raw_reconciliation_compares_every_partial(rolled):
    """first/last and their times are checked too, not only count, sum, min and max."""
    corrupt(
        rolled,
        "15m",
        Q,
        WINDOW_15M_NS,
        lambda r: r.with_columns(pl.col("last_time") - 1, pl.col("first") + 0.5),
    )
    check = quarter_checks(rolled)["rollup_15m_matches_raw_counts"]
    assert not check.passed
    assert check.metadata["mismatched_rows"].value == 12  # every row of the quarter


def test_raw_reconciliation_does_not_trust_the_stores_aggregation(
    defs, instance, store, monkeypatch
):
    """A store whose own aggregation is wrong writes wrong 15-minute rows; the check reads
    the raw points back and recomputes them in polars, so it fails (a check that compared
    aggregate_raw with aggregate_raw would pass)."""
    from telemetry_core.store.sqlite import SqliteStore

    real = SqliteStore.aggregate_raw

    def skewed(self, *args, **kwargs):
        return real(self, *args, **kwargs).with_columns(pl.col("sum") * 1.01)

    store.write_points(fleet_points(START, 1))
    monkeypatch.setattr(SqliteStore, "aggregate_raw", skewed)
    result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
        instance=instance, partition_key="2026-11-20-06:15"
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    raw = checks["rollup_15m_matches_raw_counts"]
    assert not raw.passed
    assert raw.metadata["mismatched_rows"].value == 12
    # the merged levels agree with their (wrong) parent: consistency checks cannot see it
    assert checks["site_15m_matches_devices"].passed


def test_check_descriptions_say_what_they_compare(defs):
    graph = defs.get_repository_def().asset_graph
    specs = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert "Independent recomputation" in specs["rollup_15m_matches_raw_counts"].description
    for name in (
        "rollup_1h_matches_quarters",
        "site_15m_matches_devices",
        "site_1h_matches_devices",
        "portfolio_15m_matches_sites",
        "portfolio_1h_matches_sites",
    ):
        assert "not an independent proof" in specs[name].description, name
        assert "same combine()" in specs[name].description, name
