"""The store's retention primitives, on every backend: oldest row, rows per window, and
window-granular deletes that leave a window written since its count alone."""

from __future__ import annotations

import polars as pl

from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

W = WINDOW_15M_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS  # an hour start, 2026
KEY = ("energy", "site-a", "meter-1", "power_w")


def _raw(n_per_window: dict[int, int]) -> list:
    return [
        (*KEY[:2], f"meter-{i}", KEY[3], T0 + w * W + 1000 * i, float(i))
        for w, n in n_per_window.items()
        for i in range(n)
    ]


def _rows(partials: pl.DataFrame) -> pl.DataFrame:
    return partials.with_columns(pl.lit(True).alias("is_work_hours"))


def test_oldest_and_counts_of_raw_points(backend):
    store = backend.store
    assert store.retention_oldest(None, T0 + 10 * W) is None
    assert store.retention_counts(None, T0, T0 + 10 * W) == {}
    store.write_points(_raw({1: 3, 2: 1, 5: 4}))
    assert store.retention_oldest(None, T0 + 10 * W) == T0 + W
    assert store.retention_oldest(None, T0 + W) is None  # strictly before
    assert store.retention_counts(None, T0, T0 + 10 * W) == {
        T0 + W: 3,
        T0 + 2 * W: 1,
        T0 + 5 * W: 4,
    }
    assert store.retention_counts(None, T0 + 2 * W, T0 + 5 * W) == {T0 + 2 * W: 1}


def test_counts_of_rollup_levels_skip_replaced_rows(backend):
    store = backend.store
    store.write_points(_raw({0: 3, 1: 2, 4: 1}))
    partials = store.aggregate_raw(T0, T0 + HOUR_NS + W, W)
    store.replace_rollups("15m", T0, T0 + 2 * HOUR_NS, _rows(partials))
    assert store.retention_counts("15m", T0, T0 + 2 * HOUR_NS) == {T0: 3, T0 + W: 2, T0 + 4 * W: 1}
    assert store.retention_oldest("15m", T0 + 2 * HOUR_NS) == T0
    # a re-run that writes fewer rows (InfluxDB keeps tombstones): only live rows count
    fewer = partials.filter(pl.col("window_start") == T0).head(1)
    store.replace_rollups("15m", T0, T0 + W, _rows(fewer))
    assert store.retention_counts("15m", T0, T0 + W) == {T0: 1}
    hourly = store.aggregate_raw(T0, T0 + 2 * HOUR_NS, HOUR_NS)
    store.replace_rollups("1h", T0, T0 + 2 * HOUR_NS, _rows(hourly))
    assert store.retention_counts("1h", T0, T0 + 2 * HOUR_NS) == {T0: 3, T0 + HOUR_NS: 1}


def test_delete_windows_exactly_and_only_unchanged_ones(backend):
    store = backend.store
    store.write_points(_raw({0: 2, 1: 3, 2: 2, 3: 1}))
    # window 2 gets a point after it was counted: its expected count no longer holds
    store.write_points([(*KEY, T0 + 2 * W + 999, 7.0)])
    deleted = store.retention_delete(None, {T0: 2, T0 + W: 3, T0 + 2 * W: 2})
    assert deleted == {T0: 2, T0 + W: 3}
    left = store.read_points(T0 - W, T0 + 5 * W)
    assert left.height == 4 and all(T0 + 2 * W <= t < T0 + 4 * W for t in left["time"])
    assert store.retention_counts(None, T0, T0 + 5 * W) == {T0 + 2 * W: 3, T0 + 3 * W: 1}
    assert store.retention_delete(None, {T0: 2}) == {}  # gone already: nothing to do
    assert store.retention_delete(None, {}) == {}


def test_delete_rollup_windows_of_one_level(backend):
    store = backend.store
    store.write_points(_raw({0: 2, 1: 3, 5: 1}))
    partials = store.aggregate_raw(T0, T0 + 2 * HOUR_NS, W)
    for level in ("15m", "site_15m"):
        rows = partials if level == "15m" else partials.with_columns(pl.lit("*").alias("device_id"))
        rows = rows.unique(["window_start", "measurement", "site_id", "device_id", "field"])
        store.replace_rollups(level, T0, T0 + 2 * HOUR_NS, _rows(rows))
    before_site = store.read_rollups("site_15m", T0, T0 + 2 * HOUR_NS)
    assert store.retention_delete("15m", {T0: 2, T0 + W: 3}) == {T0: 2, T0 + W: 3}
    assert store.read_rollups("15m", T0, T0 + 2 * HOUR_NS)["window_start"].to_list() == [T0 + 5 * W]
    assert store.read_rollups("site_15m", T0, T0 + 2 * HOUR_NS).equals(before_site)
    assert store.read_points(T0, T0 + 2 * HOUR_NS).height == 6  # raw untouched
