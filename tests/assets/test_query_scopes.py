"""`telemetry query --scope site|portfolio` answers from the stored site and portfolio
rollups (the rows the checks validated), never from a recomputation of device rows."""

from __future__ import annotations

import json

import polars as pl

from telemetry_cli.main import main
from tests.assets.rollup_helpers import fleet_points, ns, run_all

START = ns("2026-11-20T06:00:00Z")
HOUR = (START, START + 3600 * 10**9)


def query(capsys, *args: str) -> list[dict]:
    code = main(
        ["query", "--measurement", "energy", "--field", "energy_kwh", "--format", "json",
         "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T07:00:00Z", *args]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_site_and_portfolio_rows_are_the_stored_rollups(defs, instance, store, capsys):
    store.write_points(fleet_points(START, 1))
    run_all(
        defs, instance,
        q_start="2026-11-20-06:00", q_end="2026-11-20-06:45",
        h_start="2026-11-20-06:00", h_end="2026-11-20-06:00",
    )  # fmt: skip
    # Give the stored site and portfolio rows values no recomputation from devices yields.
    for level in ("site_15m", "portfolio_1h"):
        rows = store.read_rollups(level, *HOUR)
        store.replace_rollups(level, *HOUR, rows.with_columns(pl.col("sum") + 1000.0))

    site = query(capsys, "--scope", "site", "--resolution", "15m", "--site", "site-a")
    stored = store.read_rollups("site_15m", *HOUR, site_id="site-a", field="energy_kwh")
    assert [r["sum"] for r in site] == stored["sum"].to_list()
    assert all(r["sum"] > 1000.0 for r in site)
    assert {r["site_id"] for r in site} == {"site-a"} and "device_id" not in site[0]

    portfolio = query(capsys, "--scope", "portfolio", "--resolution", "1h")
    (row,) = portfolio
    stored = store.read_rollups("portfolio_1h", *HOUR, field="energy_kwh")
    assert row["sum"] == stored["sum"][0] and row["sum"] > 1000.0
    assert row["site_id"] is None and "is_work_hours" not in row

    # the device rows are untouched: device scope still shows their own sums
    devices = query(capsys, "--resolution", "1h")
    assert sum(r["sum"] for r in devices) < 1000.0


def test_windows_without_stored_site_rows_answer_nothing(store, capsys):
    """Device rows alone (no Dagster site rollup yet): the site scope has no row to show."""
    from telemetry_core.rollup import rollup_raw
    from telemetry_core.windows import WINDOW_15M_NS

    store.write_points(fleet_points(START, 1))
    quarters = rollup_raw(store.read_points(*HOUR), WINDOW_15M_NS)
    store.replace_rollups("15m", *HOUR, quarters.with_columns(pl.lit(False).alias("is_work_hours")))
    assert len(query(capsys, "--resolution", "15m")) == 2 * 3 * 4  # device rows are there
    assert query(capsys, "--scope", "site", "--resolution", "15m") == []
