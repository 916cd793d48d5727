"""Rollup maths against hand-computed values: partials merge exactly."""

import polars as pl

from telemetry_core.config import parse_config
from telemetry_core.rollup import combine, rollup_raw, with_mean, with_work_hours
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

W = WINDOW_15M_NS


def raw(rows):
    return pl.DataFrame(
        rows, schema=["time", "measurement", "site_id", "device_id", "field", "value"], orient="row"
    )


def test_boundaries_and_partials():
    frame = raw([
        (0, "e", "a", "d1", "p", 1.0),
        (W - 1, "e", "a", "d1", "p", 3.0),  # last ns of the first window
        (W, "e", "a", "d1", "p", 10.0),  # first ns of the second
        (5, "e", "a", "d2", "p", 2.0),
    ])  # fmt: skip
    p = rollup_raw(frame, W).rows(named=True)
    d1_first = next(r for r in p if r["device_id"] == "d1" and r["window_start"] == 0)
    assert (d1_first["count"], d1_first["sum"], d1_first["min"], d1_first["max"]) == (
        2,
        4.0,
        1.0,
        3.0,
    )
    assert (d1_first["first"], d1_first["last"], d1_first["last_time"]) == (1.0, 3.0, W - 1)
    assert [r["window_start"] for r in p if r["device_id"] == "d1"] == [0, W]


def test_hour_equals_its_quarters_and_site_equals_devices():
    rows = []
    for q in range(4):
        for dev, base in (("d1", 1.0), ("d2", 100.0)):
            rows.append((q * W + 7, "e", "a", dev, "p", base + q))
    rows.append((3 * W + 7, "e", "b", "d9", "p", 1000.0))
    quarters = rollup_raw(raw(rows), W)
    hour = (
        combine(quarters, HOUR_NS, "device").filter(pl.col("device_id") == "d1").row(0, named=True)
    )
    assert (hour["count"], hour["sum"], hour["min"], hour["max"]) == (4, 10.0, 1.0, 4.0)
    assert (hour["first"], hour["last"]) == (1.0, 4.0)
    site = combine(quarters, HOUR_NS, "site").filter(pl.col("site_id") == "a").row(0, named=True)
    assert site["device_id"] == "*"
    assert (site["count"], site["sum"], site["min"], site["max"]) == (8, 10.0 + 406.0, 1.0, 103.0)
    # identical timestamps on two devices: ties broken by device id (d1 first, d2 last)
    assert (site["first"], site["last"]) == (1.0, 103.0)
    portfolio = combine(quarters, HOUR_NS, "portfolio").row(0, named=True)
    assert (portfolio["site_id"], portfolio["count"], portfolio["last"]) == ("*", 9, 1000.0)
    assert with_mean(combine(quarters, HOUR_NS, "portfolio"))["mean"][0] == (416.0 + 1000.0) / 9


def test_work_hours_flag_per_site():
    cfg = parse_config(
        {
            "sites": {
                "a": {
                    "timezone": "UTC",
                    "work_hours": {"days": ["thu"], "start": "00:00", "end": "00:15"},
                }
            }
        }
    )
    parts = rollup_raw(
        raw(
            [
                (0, "e", "a", "d", "p", 1.0),
                (W, "e", "a", "d", "p", 1.0),
                (0, "e", "b", "d", "p", 1.0),
            ]
        ),
        W,
    )
    flags = with_work_hours(parts, cfg).sort("site_id", "window_start")["is_work_hours"].to_list()
    assert flags == [True, False, False]  # 1970-01-01 was a Thursday; site b has no hours
