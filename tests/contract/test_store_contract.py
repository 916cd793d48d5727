"""The store contract: every backend (sqlite, influxdb, influxdb2) runs this suite unchanged.

Each test names one promise of ``telemetry_core.store.base.Store`` that the daemon, the
Dagster assets or ``telemetry query`` rely on.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from telemetry_core.identifiers import IdentifierError
from telemetry_core.rollup import rollup_raw
from telemetry_core.store import StoreUnavailable
from telemetry_core.store.base import ALL, RAW_COLUMNS, ROLLUP_COLUMNS
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

W = WINDOW_15M_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS  # an hour start, 2026
RAW_SCHEMA = {
    "time": pl.Int64, "measurement": pl.String, "site_id": pl.String,
    "device_id": pl.String, "field": pl.String, "value": pl.Float64,
}  # fmt: skip
PARTIAL_SCHEMA = {
    "window_start": pl.Int64, "measurement": pl.String, "site_id": pl.String,
    "device_id": pl.String, "field": pl.String, "count": pl.Int64, "sum": pl.Float64,
    "min": pl.Float64, "max": pl.Float64, "first": pl.Float64, "last": pl.Float64,
    "first_time": pl.Int64, "last_time": pl.Int64,
}  # fmt: skip
ROLLUP_SCHEMA = {**PARTIAL_SCHEMA, "is_work_hours": pl.Boolean}


def _points(n: int, *, start: int = T0, sites=("site-a", "site-b"), seed: int = 7) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        site = sites[i % len(sites)]
        device = f"meter-{(i // len(sites)) % 3}"
        field = ("power_w", "energy_kwh")[(i // 7) % 2]
        t = start + rng.randrange(0, 3 * W)  # three windows, nanosecond offsets
        out.append(("energy", site, device, field, t, rng.uniform(-1e6, 1e6)))
    # one value per identity, as a store keeps it (the last write wins)
    return list({p[:5]: p for p in out}.values())


def _rollup_rows(partials: pl.DataFrame, work: bool | None = True) -> pl.DataFrame:
    return partials.with_columns(pl.lit(work, dtype=pl.Boolean).alias("is_work_hours"))


def test_write_and_read_back_exactly(backend):
    values = [0.1, 1 / 3, -1e300, 5e-324, 1e20, 123456.789, -0.0, 42.0]
    points = [
        ("energy", "site-a", "meter-1", "power_w", T0 + 123_456_789 + i, v)
        for i, v in enumerate(values)
    ]
    result = backend.store.write_points(points)
    assert result.points == len(points)
    df = backend.store.read_points(T0, T0 + W)
    assert df.columns == list(RAW_COLUMNS)
    assert dict(df.schema) == RAW_SCHEMA
    assert df.rows() == [(t, m, s, d, f, v) for m, s, d, f, t, v in points]


def test_read_filters(backend):
    backend.store.write_points(_points(200))
    df = backend.store.read_points(T0, T0 + 3 * W, site_id="site-b", field="power_w")
    assert df.height > 0
    assert set(df["site_id"]) == {"site-b"} and set(df["field"]) == {"power_w"}
    one = backend.store.read_points(T0, T0 + 3 * W, device_id="meter-1", measurement="energy")
    assert set(one["device_id"]) == {"meter-1"}
    assert backend.store.read_points(T0, T0 + 3 * W, measurement="hvac").height == 0


def test_rewrite_replaces_by_identity(backend):
    key = ("energy", "site-a", "meter-1", "power_w")
    backend.store.write_points([(*key, T0 + 5, 1.0), (*key, T0 + 6, 2.0)])
    backend.store.write_points([(*key, T0 + 5, 10.0)])
    backend.store.write_points([(*key, T0 + 5, 10.0)])  # a replay changes nothing
    df = backend.store.read_points(T0, T0 + W)
    assert df.select("time", "value").rows() == [(T0 + 5, 10.0), (T0 + 6, 2.0)]
    agg = backend.store.aggregate_raw(T0, T0 + W, W)
    assert agg["count"].to_list() == [2]


def test_half_open_window_edges(backend):
    key = ("energy", "site-a", "meter-1", "power_w")
    times = [T0 - 1, T0, T0 + W - 1, T0 + W]
    backend.store.write_points([(*key, t, float(i)) for i, t in enumerate(times)])
    assert backend.store.read_points(T0, T0 + W)["time"].to_list() == [T0, T0 + W - 1]
    agg = backend.store.aggregate_raw(T0 - W, T0 + 2 * W, W)
    assert agg.select("window_start", "count").rows() == [(T0 - W, 1), (T0, 2), (T0 + W, 1)]
    inner = agg.filter(pl.col("window_start") == T0).row(0, named=True)
    assert (inner["first_time"], inner["last_time"]) == (T0, T0 + W - 1)
    assert (inner["first"], inner["last"]) == (1.0, 2.0)


def test_aggregate_raw_equals_reference(backend):
    backend.store.write_points(_points(3000))
    for site in (None, "site-a"):
        got = backend.store.aggregate_raw(T0, T0 + 3 * W, W, site_id=site)
        raw = backend.store.read_points(T0, T0 + 3 * W, site_id=site)
        want = rollup_raw(raw, W)
        assert dict(got.schema) == PARTIAL_SCHEMA
        assert got.height == want.height > 0
        # float sums may differ in the last bits with summation order, nothing else may
        assert_frame_equal(got.drop("sum"), want.drop("sum"), check_exact=True)
        assert_frame_equal(got.select("sum"), want.select("sum"), rel_tol=1e-9, abs_tol=1e-6)
    hourly = backend.store.aggregate_raw(T0, T0 + HOUR_NS, HOUR_NS)
    assert hourly["count"].sum() == backend.store.read_points(T0, T0 + HOUR_NS).height


def test_aggregate_raw_over_a_long_range(backend):
    """A backfill-sized range (many windows, some empty) gives the same partials."""
    pts = _points(400, start=T0) + _points(400, start=T0 + 9 * W, seed=8)
    backend.store.write_points(pts)
    got = backend.store.aggregate_raw(T0 - W, T0 + 14 * W, W)
    want = rollup_raw(backend.store.read_points(T0 - W, T0 + 14 * W), W)
    assert got["window_start"].n_unique() == 6
    assert_frame_equal(got.drop("sum"), want.drop("sum"), check_exact=True)
    assert_frame_equal(got.select("sum"), want.select("sum"), rel_tol=1e-9, abs_tol=1e-6)
    assert backend.store.aggregate_raw(T0, T0, W).height == 0


def test_replace_rollups_replaces_whole_windows(backend):
    store = backend.store
    store.write_points(_points(600))
    partials = store.aggregate_raw(T0, T0 + 3 * W, W)
    assert store.replace_rollups("15m", T0, T0 + 3 * W, _rollup_rows(partials)) == partials.height
    got = store.read_rollups("15m", T0, T0 + 3 * W)
    assert got.columns == list(ROLLUP_COLUMNS) and dict(got.schema) == ROLLUP_SCHEMA
    assert_frame_equal(got, _rollup_rows(partials))
    # re-run of the middle window with fewer series and other values: nothing old survives
    fewer = partials.filter(
        (pl.col("window_start") == T0 + W) & (pl.col("device_id") == "meter-0")
    ).with_columns(pl.col("count") + 1)
    store.replace_rollups("15m", T0 + W, T0 + 2 * W, _rollup_rows(fewer, None))
    middle = store.read_rollups("15m", T0 + W, T0 + 2 * W)
    assert_frame_equal(middle, _rollup_rows(fewer, None))
    outside = store.read_rollups("15m", T0, T0 + 3 * W).filter(pl.col("window_start") != T0 + W)
    assert_frame_equal(outside, _rollup_rows(partials.filter(pl.col("window_start") != T0 + W)))
    # an empty re-run empties the window
    store.replace_rollups("15m", T0 + W, T0 + 2 * W, _rollup_rows(fewer.clear()))
    assert store.read_rollups("15m", T0 + W, T0 + 2 * W).height == 0
    with pytest.raises(ValueError, match="outside"):
        store.replace_rollups("15m", T0, T0 + W, _rollup_rows(fewer))


def test_site_scoped_replace_leaves_other_sites(backend):
    store = backend.store
    store.write_points(_points(600))
    partials = store.aggregate_raw(T0, T0 + W, W)
    store.replace_rollups("15m", T0, T0 + W, _rollup_rows(partials))
    site_a = partials.filter(pl.col("site_id") == "site-a").head(1)
    store.replace_rollups("15m", T0, T0 + W, _rollup_rows(site_a, False), site_id="site-a")
    got = store.read_rollups("15m", T0, T0 + W)
    assert_frame_equal(got.filter(pl.col("site_id") == "site-a"), _rollup_rows(site_a, False))
    assert_frame_equal(
        got.filter(pl.col("site_id") == "site-b"),
        _rollup_rows(partials.filter(pl.col("site_id") == "site-b")),
    )
    assert_frame_equal(store.read_rollups("15m", T0, T0 + W, site_id="site-b", device_id="meter-1"),
                       _rollup_rows(partials.filter((pl.col("site_id") == "site-b") & (pl.col("device_id") == "meter-1"))))  # fmt: skip
    with pytest.raises(ValueError, match="site"):
        store.replace_rollups("15m", T0, T0 + W, _rollup_rows(partials), site_id="site-a")


def test_levels_and_rolled_up_windows(backend):
    store = backend.store
    portfolio = pl.DataFrame(
        {"window_start": [T0], "measurement": ["energy"], "site_id": [ALL], "device_id": [ALL],
         "field": ["energy_kwh"], "count": [4], "sum": [2.0], "min": [0.25], "max": [1.0],
         "first": [0.25], "last": [1.0], "first_time": [T0 + 1], "last_time": [T0 + 99]},
        schema=PARTIAL_SCHEMA,
    )  # fmt: skip
    store.replace_rollups("portfolio_1h", T0, T0 + HOUR_NS, _rollup_rows(portfolio, None))
    assert_frame_equal(
        store.read_rollups("portfolio_1h", T0, T0 + HOUR_NS), _rollup_rows(portfolio, None)
    )
    assert store.read_rollups("1h", T0, T0 + HOUR_NS).height == 0
    assert store.rolled_up_windows("portfolio_1h", T0, T0 + HOUR_NS) == [(T0, ALL)]
    store.replace_rollups("15m", T0, T0 + 2 * W, _rollup_rows(portfolio.clear()), site_id="site-b")
    store.replace_rollups("15m", T0 + W, T0 + 2 * W, _rollup_rows(portfolio.clear()))
    assert store.rolled_up_windows("15m", T0, T0 + 4 * W) == [
        (T0, "site-b"),
        (T0 + W, ALL),
        (T0 + W, "site-b"),
    ]
    assert store.rolled_up_windows("15m", T0 + 2 * W, T0 + 4 * W) == []
    with pytest.raises(ValueError, match="level"):
        store.read_rollups("5m", T0, T0 + W)


def test_late_marks_by_cutoff(backend):
    store = backend.store
    key = ("energy", "site-a", "meter-1", "power_w")
    other = ("energy", "site-b", "meter-1", "power_w")
    # cutoff = end of the first window: that window is late, the next one is not
    result = store.write_points(
        [(*key, T0 + 1, 1.0), (*key, T0 + 2, 1.0), (*other, T0 + 3, 1.0), (*key, T0 + W, 1.0)],
        late_cutoff_ns=T0 + W,
    )
    assert result.late_windows == ((T0, "site-a"), (T0, "site-b"))
    marks = {(m.window_start, m.site_id): m.points for m in store.late_windows()}
    assert marks == {(T0, "site-a"): 2, (T0, "site-b"): 1}
    store.write_points([(*key, T0 + 9, 1.0)], late_cutoff_ns=T0 + 5 * W)
    assert store.late_windows()[0].points in (3,)  # points add up per window and site
    assert store.write_points([(*key, T0 + 10, 1.0)]).late_windows == ()


def test_late_marks_for_rolled_up_windows(backend):
    store = backend.store
    a = ("energy", "site-a", "meter-1", "power_w")
    b = ("energy", "site-b", "meter-1", "power_w")
    empty = _rollup_rows(store.aggregate_raw(T0, T0, W))
    store.replace_rollups("15m", T0, T0 + W, empty)  # all sites
    store.replace_rollups("15m", T0 + W, T0 + 2 * W, empty, site_id="site-a")
    store.replace_rollups("1h", T0 + 2 * W, T0 + 3 * W, pl.DataFrame())  # not a 15m mark
    result = store.write_points(
        [(*a, T0 + 1, 1.0), (*b, T0 + 2, 1.0), (*a, T0 + W, 1.0), (*b, T0 + W, 1.0),
         (*a, T0 + 2 * W, 1.0)]
    )  # fmt: skip
    assert result.late_windows == ((T0, "site-a"), (T0, "site-b"), (T0 + W, "site-a"))
    late = store.late_windows()
    assert [(m.window_start, m.site_id) for m in late] == [
        (T0 + W, "site-a"),
        (T0, "site-a"),
        (T0, "site-b"),
    ]  # newest window first
    assert [m.points for m in late] == [1, 1, 1]
    assert [(m.window_start, m.site_id) for m in store.late_windows(limit=1)] == [
        (T0 + W, "site-a")
    ]


def test_clear_late_windows_respects_newer_marks(backend):
    store = backend.store
    key = ("energy", "site-a", "meter-1", "power_w")
    store.write_points([(*key, T0 + 1, 1.0), (*key, T0 + W, 1.0)], late_cutoff_ns=T0 + 9 * W)
    marks = store.late_windows()
    assert len(marks) == 2
    seen = max(m.last_marked_at for m in marks)
    assert store.clear_late_windows([(T0, "site-a")], marked_up_to_ns=seen - 10**12) == 0
    store.write_points([(*key, T0 + W + 1, 1.0)], late_cutoff_ns=T0 + 9 * W)  # touched again
    cleared = store.clear_late_windows([(T0, "site-a"), (T0 + W, "site-a")], seen)
    assert cleared == 1
    left = store.late_windows()
    assert [(m.window_start, m.site_id, m.points) for m in left] == [(T0 + W, "site-a", 2)]
    assert store.clear_late_windows([(T0 + W, "site-a")], left[0].last_marked_at) == 1
    assert store.late_windows() == []
    assert store.clear_late_windows([], seen) == 0
    store.write_points([(*key, T0 + 2, 5.0)], late_cutoff_ns=T0 + 9 * W)  # marked afresh
    assert [(m.window_start, m.points) for m in store.late_windows()] == [(T0, 1)]


BAD_NAMES = ["a b", "x'; DROP", 'a"b', "", "a,b", "a=b", "é", "x" * 65, "a\nb", "a\\"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_identifiers_refused_before_any_query(backend, bad):
    """Refused with IdentifierError even by a store whose server is down: nothing was sent."""
    with backend.outage() as down:
        with pytest.raises(IdentifierError):  # "*" is reserved for site/portfolio rollups
            down.write_points([("energy", "*", "meter-1", "power_w", T0, 1.0)])
        with pytest.raises(IdentifierError):
            down.write_points([("energy", bad, "meter-1", "power_w", T0, 1.0)])
        with pytest.raises(IdentifierError):
            down.write_points([("energy", "site-a", "meter-1", bad + "!", T0, 1.0)])
        with pytest.raises(IdentifierError):
            down.read_points(T0, T0 + W, site_id=bad)
        with pytest.raises(IdentifierError):
            down.read_rollups("15m", T0, T0 + W, device_id=bad)
    assert backend.store.read_points(T0, T0 + W).height == 0


def test_large_batch(backend):
    n = 100_000
    points = [
        ("energy", f"site-{i % 4}", f"meter-{i % 50}", "power_w", T0 + i * 1000, float(i))
        for i in range(n)
    ]
    assert backend.store.write_points(points).points == n
    agg = backend.store.aggregate_raw(T0, T0 + W, W)
    assert agg["count"].sum() == n and agg.height == 100
    assert agg["sum"].sum() == pytest.approx(n * (n - 1) / 2)
    df = backend.store.read_points(T0, T0 + W, site_id="site-1")
    assert df.height == n // 4 and df["value"].sum() == sum(range(1, n, 4))


def test_unavailable_server_raises_store_unavailable(backend):
    backend.store.ping()
    with backend.outage() as down:
        with pytest.raises(StoreUnavailable):
            down.ping()
        with pytest.raises(StoreUnavailable):
            down.write_points([("energy", "site-a", "meter-1", "power_w", T0, 1.0)])
