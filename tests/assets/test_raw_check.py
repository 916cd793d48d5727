"""The raw reconciliation check (``rollup_15m_matches_raw_counts``) catches mistakes in the
store's own aggregation: a store whose ``aggregate_raw`` drops a point, puts a boundary
point in the wrong window, takes first/last from the wrong point or misnames a series
writes wrong 15-minute rows through the asset's own code path, and the check fails, both
with SQLite's separate recount (``recount_raw``) and with the polars recomputation other
stores get. ``recount_raw`` itself equals the reference computation (``rollup_raw``)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from telemetry_assets.checks import (
    CHECK_FUNCTIONS,
    RAW_SOURCE,
    mismatches,
)
from telemetry_core.config import load_config
from telemetry_core.rollup import (
    compute_rollup,
    recount_from_points,
    rollup_raw,
    spec_for,
    with_work_hours,
)
from telemetry_core.store.base import PARTIAL_COLUMNS
from telemetry_core.store.sqlite import SqliteStore
from telemetry_core.windows import WINDOW_15M_NS
from tests.assets.rollup_helpers import fleet_points, ns

START = ns("2026-11-20T06:00:00Z")
END = START + 4 * WINDOW_15M_NS
BOUNDARY = START + WINDOW_15M_NS  # 06:15:00.000 exactly: belongs to 06:15, not 06:00
RAW_CHECK = "rollup_15m_matches_raw_counts"
SPEC = spec_for("15m", "device")
KEYS = ["window_start", "measurement", "site_id", "device_id", "field"]


def dropped_last_point(store: SqliteStore, a: int, b: int, w: int, **kw) -> pl.DataFrame:
    """An off-by-one range (``time < end - 1``): a point at the range's last ns is lost."""
    return SqliteStore.aggregate_raw(store, a, b - 1, w, **kw)


def boundary_in_previous_window(store: SqliteStore, a: int, b: int, w: int, **kw) -> pl.DataFrame:
    """Windows bucketed as ``(start, end]``: a point exactly on a boundary lands one early."""
    raw = store.read_points(a, b)
    shifted = raw.with_columns(pl.col("time") - 1)
    return rollup_raw(shifted, w).with_columns(pl.col("first_time") + 1, pl.col("last_time") + 1)


def first_and_last_swapped(store: SqliteStore, a: int, b: int, w: int, **kw) -> pl.DataFrame:
    rows = SqliteStore.aggregate_raw(store, a, b, w, **kw)
    return rows.with_columns(pl.col("first").alias("last"), pl.col("last").alias("first"))


def series_misnamed(store: SqliteStore, a: int, b: int, w: int, **kw) -> pl.DataFrame:
    """A join that pairs one device's partials with another device's names."""
    rows = SqliteStore.aggregate_raw(store, a, b, w, **kw)
    swap = {"m1": "m2", "m2": "m1"}
    return rows.with_columns(pl.col("device_id").replace(swap))


BUGS: dict[str, Callable[..., pl.DataFrame]] = {
    "dropped_last_point": dropped_last_point,
    "boundary_in_previous_window": boundary_in_previous_window,
    "first_and_last_swapped": first_and_last_swapped,
    "series_misnamed": series_misnamed,
}


class BuggyStore(SqliteStore):
    """The SQLite store with one mistake injected into ``aggregate_raw`` only."""

    def __init__(self, path: str, bug: Callable[..., pl.DataFrame]) -> None:
        super().__init__(path)
        self._bug = bug

    def aggregate_raw(self, start_ns, end_ns, width_ns, *, site_id=None):
        return self._bug(self, start_ns, end_ns, width_ns, site_id=site_id)


class WithoutRecount:
    """The store with the recount the other backends use (InfluxDB, PostgreSQL): the
    points read back and recomputed in polars (``rollup.recount_from_points``)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def recount_raw(self, start_ns: int, end_ns: int, width_ns: int) -> pl.DataFrame:
        return recount_from_points(self._store, start_ns, end_ns, width_ns)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def points() -> list[tuple]:
    """The fleet hour, plus points exactly on a window boundary and on the range's last ns."""
    extra = [
        ("energy", "site-a", "m1", "power_w", BOUNDARY, 777.0),
        ("energy", "site-b", "m3", "energy_kwh", BOUNDARY, 0.5),
        ("energy", "site-a", "m2", "power_w", END - 1, 42.0),
    ]
    return fleet_points(START, 1) + extra


def roll_up_and_check(store, check_store) -> object:
    """What the 15-minute asset does (compute_rollup, work hours, replace), then the check."""
    config = load_config()
    rows = with_work_hours(compute_rollup(SPEC, store, START, END), config)
    store.replace_rollups(SPEC.level, START, END, rows)
    return CHECK_FUNCTIONS[RAW_CHECK](check_store, config, START, END)


@pytest.mark.parametrize("path", ["recount", "polars"])
@pytest.mark.parametrize("bug", list(BUGS))
def test_check_fails_on_a_mistake_in_aggregate_raw(env, bug, path):
    store = BuggyStore(env["TELEMETRY_STORE_URL"].removeprefix("sqlite:///"), BUGS[bug])
    try:
        store.write_points(points())
        result = roll_up_and_check(store, store if path == "recount" else WithoutRecount(store))
        md = {k: v.value for k, v in result.metadata.items()}
        assert not result.passed, md
        assert md["mismatched_rows"] >= 1
        assert md["compared_with"] == RAW_SOURCE
    finally:
        store.close()


@pytest.mark.parametrize("path", ["recount", "polars"])
def test_check_passes_on_the_real_aggregation(store, path):
    store.write_points(points())
    result = roll_up_and_check(store, store if path == "recount" else WithoutRecount(store))
    assert result.passed, {k: v.value for k, v in result.metadata.items()}
    assert (
        result.metadata["rows_checked"].value == 4 * 2 * 3 * 2
    )  # windows x sites x meters x fields


@pytest.mark.parametrize(
    "a, b",
    [
        (START, END),
        (START + 7 * 10**9, END - 11 * 10**9),  # not on window boundaries: partial windows
        (BOUNDARY, BOUNDARY + 1),  # one nanosecond: the boundary points only
        (START - WINDOW_15M_NS, START),  # nothing
    ],
)
def test_recount_equals_the_reference_computation(store, a, b):
    store.write_points(points())
    store.write_points([(*points()[5][:5], 9999.5)], seqs=[3])  # a rewrite: the new value counts
    got = store.recount_raw(a, b, WINDOW_15M_NS)
    want = rollup_raw(store.read_points(a, b), WINDOW_15M_NS)
    assert got.schema == want.schema
    assert got.height == want.height
    assert mismatches(got, want, PARTIAL_COLUMNS).height == 0
    # counts and times are exact; first/last are the very points, not close ones
    exact = ["count", "first", "last", "first_time", "last_time"]
    assert got.sort(KEYS).select(KEYS + exact).equals(want.sort(KEYS).select(KEYS + exact))
