"""The SQLite store's rollup series index: one series' windows are read by a seek, every
other read keeps walking the primary key over its range, and an existing file gains the
index when it is opened.

(Why it matters: ``bench/bench_api.py``'s 7-day device series read every device's rows of
the week; the reads' results are the same either way, which the store contract checks.)
"""

from __future__ import annotations

import sqlite3

import polars as pl
import pytest

from telemetry_core.rollup import combine
from telemetry_core.store.base import ROLLUP_COLUMNS, ROLLUP_LEVELS
from telemetry_core.store.sqlite import SqliteStore
from telemetry_core.windows import WINDOW_15M_NS

T0 = 1_795_000_000 * 10**9 // WINDOW_15M_NS * WINDOW_15M_NS
WINDOWS = 8
DEVICES = {"site-a": ("m1", "m2"), "site-b": ("m1", "m3")}


def device_rows() -> pl.DataFrame:
    rows = []
    for site, devices in DEVICES.items():
        for device in devices:
            for field in ("energy_kwh", "power_w"):
                for k in range(WINDOWS):
                    ws = T0 + k * WINDOW_15M_NS
                    v = float(k + len(device) + len(field))
                    rows.append(
                        (ws, "energy", site, device, field, 3, 3 * v, v, v, v, v, ws, ws + 1, None)
                    )
    return pl.DataFrame(rows, schema=list(ROLLUP_COLUMNS), orient="row")


@pytest.fixture
def store(tmp_path) -> SqliteStore:
    s = SqliteStore(str(tmp_path / "t.db"))
    end = T0 + WINDOWS * WINDOW_15M_NS
    dev = device_rows()
    s.replace_rollups("15m", T0, end, dev)
    site = combine(dev, WINDOW_15M_NS, "site").with_columns(is_work_hours=pl.lit(None))
    s.replace_rollups("site_15m", T0, end, site)
    portfolio = combine(site, WINDOW_15M_NS, "portfolio").with_columns(is_work_hours=pl.lit(None))
    s.replace_rollups("portfolio_15m", T0, end, portfolio)
    return s


def plan_of_read(store: SqliteStore, level: str, **filters: str) -> tuple[str, pl.DataFrame]:
    """The query plan of the SELECT that ``read_rollups`` runs, and what it returned."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        frame = store.read_rollups(level, T0, T0 + WINDOWS * WINDOW_15M_NS, **filters)
    finally:
        store._conn.set_trace_callback(None)
    (sql,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    plan = store._conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    return " | ".join(row[3] for row in plan), frame


@pytest.mark.parametrize(
    ("level", "filters"),
    [
        ("15m", {"measurement": "energy", "field": "power_w", "site_id": "site-a",
                 "device_id": "m2"}),
        ("site_15m", {"measurement": "energy", "field": "power_w", "site_id": "site-b"}),
        ("portfolio_15m", {"measurement": "energy", "field": "power_w"}),
    ],
)  # fmt: skip
def test_one_series_is_read_by_its_index(store, level, filters):
    plan, frame = plan_of_read(store, level, **filters)
    assert f"USING INDEX rollup_{level}_series" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the index already yields window order
    assert frame.height == WINDOWS
    assert frame["window_start"].to_list() == [T0 + k * WINDOW_15M_NS for k in range(WINDOWS)]
    everything = store.read_rollups(level, T0, T0 + WINDOWS * WINDOW_15M_NS)
    for key, value in filters.items():
        everything = everything.filter(pl.col(key) == value)
    assert frame.equals(everything)


@pytest.mark.parametrize(
    ("level", "filters"),
    [
        ("15m", {"measurement": "energy", "field": "power_w"}),  # the anomaly job, /v1/top
        ("15m", {"measurement": "energy", "field": "power_w", "device_id": "m1"}),
        ("15m", {"site_id": "site-a"}),  # a rollup run scoped to one site
        ("15m", {}),
        ("site_15m", {"measurement": "energy", "field": "power_w"}),  # every site
    ],
)
def test_other_reads_walk_the_window_range(store, level, filters):
    """Without statistics SQLite would take the index for ``measurement = ?`` alone and
    read the field's whole history; these reads must stay on the primary key's range."""
    plan, frame = plan_of_read(store, level, **filters)
    assert "USING PRIMARY KEY (window_start>? AND window_start<?)" in plan, plan
    everything = store.read_rollups(level, T0, T0 + WINDOWS * WINDOW_15M_NS)
    for key, value in filters.items():
        everything = everything.filter(pl.col(key) == value)
    assert frame.equals(everything)
    assert frame.height > 0


def test_a_file_without_the_index_gains_it_when_opened(store, tmp_path):
    before = store.read_rollups("15m", T0, T0 + WINDOWS * WINDOW_15M_NS)
    store.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    for level in ROLLUP_LEVELS:
        conn.execute(f"DROP INDEX rollup_{level}_series")
    conn.commit()
    conn.close()

    reopened = SqliteStore(str(tmp_path / "t.db"))
    indexes = {
        name
        for (name,) in reopened._conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {f"rollup_{level}_series" for level in ROLLUP_LEVELS} <= indexes
    assert reopened.read_rollups("15m", T0, T0 + WINDOWS * WINDOW_15M_NS).equals(before)
    plan, _ = plan_of_read(
        reopened, "15m", measurement="energy", field="power_w", site_id="site-a", device_id="m1"
    )
    assert "USING INDEX rollup_15m_series" in plan
    reopened.close()
