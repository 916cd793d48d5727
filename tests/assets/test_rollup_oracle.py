"""Oracle tests: every rollup value equals a hand-computed expectation.

Friday 2026-11-20. site-a is Europe/Berlin (UTC+1, work 08-18 local = 07-17 UTC); site-b
is America/New_York (UTC-5, work 09-17 local = 14-22 UTC). Readings sit exactly on and
1 ns before window boundaries, and several devices share timestamps.
"""

from __future__ import annotations

import polars as pl
import pytest

from telemetry_core.store import open_store
from tests.assets.rollup_helpers import ns, run_all, run_job

D = "2026-11-20T"
EPS = "59.999999999Z"

# (site, device, time, power_w, energy_kwh)
READINGS = [
    ("site-a", "m1", D + "06:59:" + EPS, 100.0, 1.0),
    ("site-a", "m1", D + "07:00:00Z", 200.0, 2.0),
    ("site-a", "m2", D + "07:00:00Z", 300.0, 3.0),
    ("site-a", "m1", D + "07:14:" + EPS, 50.0, 0.5),
    ("site-a", "m1", D + "07:15:00Z", 400.0, 4.0),
    ("site-b", "s1", D + "07:00:00Z", 5.0, 0.05),
    ("site-b", "s1", D + "13:59:" + EPS, 10.0, 0.1),
    ("site-b", "s1", D + "14:00:00Z", 20.0, 0.2),
    ("site-b", "s2", D + "14:00:00Z", 30.0, 0.3),
]

COLS = ["window_start", "site_id", "device_id", "count", "sum", "min", "max", "first", "last"]
COLS += ["first_time", "last_time", "is_work_hours"]
T = ns  # readability below


def seed(store) -> None:
    points = []
    for site, device, t, power, energy in READINGS:
        points.append(("energy", site, device, "power_w", ns(t), power))
        points.append(("energy", site, device, "energy_kwh", ns(t), energy))
    store.write_points(points)


# Expected power_w rows per level, computed by hand from READINGS.
EXPECTED = {
    "15m": [
        (T(D + "06:45:00Z"), "site-a", "m1", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), False),
        (T(D + "07:00:00Z"), "site-a", "m1", 2, 250.0, 50.0, 200.0, 200.0, 50.0,
         T(D + "07:00:00Z"), T(D + "07:14:" + EPS), True),
        (T(D + "07:00:00Z"), "site-a", "m2", 1, 300.0, 300.0, 300.0, 300.0, 300.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), True),
        (T(D + "07:00:00Z"), "site-b", "s1", 1, 5.0, 5.0, 5.0, 5.0, 5.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), False),
        (T(D + "07:15:00Z"), "site-a", "m1", 1, 400.0, 400.0, 400.0, 400.0, 400.0,
         T(D + "07:15:00Z"), T(D + "07:15:00Z"), True),
        (T(D + "13:45:00Z"), "site-b", "s1", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), False),
        (T(D + "14:00:00Z"), "site-b", "s1", 1, 20.0, 20.0, 20.0, 20.0, 20.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
        (T(D + "14:00:00Z"), "site-b", "s2", 1, 30.0, 30.0, 30.0, 30.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
    ],
    "1h": [
        (T(D + "06:00:00Z"), "site-a", "m1", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), False),
        (T(D + "07:00:00Z"), "site-a", "m1", 3, 650.0, 50.0, 400.0, 200.0, 400.0,
         T(D + "07:00:00Z"), T(D + "07:15:00Z"), True),
        (T(D + "07:00:00Z"), "site-a", "m2", 1, 300.0, 300.0, 300.0, 300.0, 300.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), True),
        (T(D + "07:00:00Z"), "site-b", "s1", 1, 5.0, 5.0, 5.0, 5.0, 5.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), False),
        (T(D + "13:00:00Z"), "site-b", "s1", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), False),
        (T(D + "14:00:00Z"), "site-b", "s1", 1, 20.0, 20.0, 20.0, 20.0, 20.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
        (T(D + "14:00:00Z"), "site-b", "s2", 1, 30.0, 30.0, 30.0, 30.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
    ],
    "site_15m": [
        (T(D + "06:45:00Z"), "site-a", "*", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), False),
        # m1 and m2 both start at 07:00: the tie goes to m1; the latest reading is m1's 50.
        (T(D + "07:00:00Z"), "site-a", "*", 3, 550.0, 50.0, 300.0, 200.0, 50.0,
         T(D + "07:00:00Z"), T(D + "07:14:" + EPS), True),
        (T(D + "07:00:00Z"), "site-b", "*", 1, 5.0, 5.0, 5.0, 5.0, 5.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), False),
        (T(D + "07:15:00Z"), "site-a", "*", 1, 400.0, 400.0, 400.0, 400.0, 400.0,
         T(D + "07:15:00Z"), T(D + "07:15:00Z"), True),
        (T(D + "13:45:00Z"), "site-b", "*", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), False),
        # s1 and s2 both at 14:00: first is s1's 20, last is s2's 30.
        (T(D + "14:00:00Z"), "site-b", "*", 2, 50.0, 20.0, 30.0, 20.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
    ],
    "site_1h": [
        (T(D + "06:00:00Z"), "site-a", "*", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), False),
        (T(D + "07:00:00Z"), "site-a", "*", 4, 950.0, 50.0, 400.0, 200.0, 400.0,
         T(D + "07:00:00Z"), T(D + "07:15:00Z"), True),
        (T(D + "07:00:00Z"), "site-b", "*", 1, 5.0, 5.0, 5.0, 5.0, 5.0,
         T(D + "07:00:00Z"), T(D + "07:00:00Z"), False),
        (T(D + "13:00:00Z"), "site-b", "*", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), False),
        (T(D + "14:00:00Z"), "site-b", "*", 2, 50.0, 20.0, 30.0, 20.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), True),
    ],
    "portfolio_15m": [
        (T(D + "06:45:00Z"), "*", "*", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), None),
        # site-a and site-b both start at 07:00: the tie goes to site-a (its first is 200).
        (T(D + "07:00:00Z"), "*", "*", 4, 555.0, 5.0, 300.0, 200.0, 50.0,
         T(D + "07:00:00Z"), T(D + "07:14:" + EPS), None),
        (T(D + "07:15:00Z"), "*", "*", 1, 400.0, 400.0, 400.0, 400.0, 400.0,
         T(D + "07:15:00Z"), T(D + "07:15:00Z"), None),
        (T(D + "13:45:00Z"), "*", "*", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), None),
        (T(D + "14:00:00Z"), "*", "*", 2, 50.0, 20.0, 30.0, 20.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), None),
    ],
    "portfolio_1h": [
        (T(D + "06:00:00Z"), "*", "*", 1, 100.0, 100.0, 100.0, 100.0, 100.0,
         T(D + "06:59:" + EPS), T(D + "06:59:" + EPS), None),
        (T(D + "07:00:00Z"), "*", "*", 5, 955.0, 5.0, 400.0, 200.0, 400.0,
         T(D + "07:00:00Z"), T(D + "07:15:00Z"), None),
        (T(D + "13:00:00Z"), "*", "*", 1, 10.0, 10.0, 10.0, 10.0, 10.0,
         T(D + "13:59:" + EPS), T(D + "13:59:" + EPS), None),
        (T(D + "14:00:00Z"), "*", "*", 2, 50.0, 20.0, 30.0, 20.0, 30.0,
         T(D + "14:00:00Z"), T(D + "14:00:00Z"), None),
    ],
}  # fmt: skip

# energy_kwh (a delta field): (level, window, site, device) -> (count, sum)
EXPECTED_KWH = {
    ("1h", D + "07:00:00Z", "site-a", "m1"): (3, 6.5),
    ("site_1h", D + "07:00:00Z", "site-a", "*"): (4, 9.5),
    ("portfolio_1h", D + "14:00:00Z", "*", "*"): (2, 0.5),
    ("15m", D + "06:45:00Z", "site-a", "m1"): (1, 1.0),
}

RANGE = dict(
    q_start="2026-11-20-06:00",
    q_end="2026-11-20-14:45",
    h_start="2026-11-20-06:00",
    h_end="2026-11-20-14:00",
)


@pytest.fixture(scope="module")
def rolled(defs, module_instance, module_env):
    store = open_store(module_env["TELEMETRY_STORE_URL"])
    seed(store)
    run_all(defs, module_instance, **RANGE)
    yield store
    store.close()


@pytest.mark.parametrize("level", list(EXPECTED))
def test_power_rollups_equal_hand_computed(rolled, level):
    got = rolled.read_rollups(level, ns(D + "00:00:00Z"), ns(D + "23:59:59Z"), field="power_w")
    expected = pl.DataFrame(EXPECTED[level], schema=got.select(COLS).schema, orient="row")
    assert got.select(COLS).sort(COLS[:3]).rows() == expected.sort(COLS[:3]).rows()


@pytest.mark.parametrize("key", list(EXPECTED_KWH))
def test_delta_field_sums(rolled, key):
    level, window, site, device = key
    got = rolled.read_rollups(
        level, ns(window), ns(window) + 1, field="energy_kwh", site_id=site, device_id=device
    )
    assert got.height == 1
    assert got["count"][0] == EXPECTED_KWH[key][0]
    assert got["sum"][0] == pytest.approx(EXPECTED_KWH[key][1], rel=1e-12)


def test_materialization_metadata(defs, instance, store):
    seed(store)
    result = run_job(defs, "rollup_15m_job", instance, key="2026-11-20-07:00")
    (mat,) = [m for m in result.asset_materializations_for_node("rollup_15m")]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["rows"] == 6  # m1, m2 (site-a), s1 (site-b) x 2 fields
    assert md["points"] == 8
    assert md["devices_reporting"] == 3
    assert md["devices_expected"] == 3  # only site-a sets expected_devices
    assert md["completeness_pct"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert md["energy.energy_kwh.sum"] == pytest.approx(2.0 + 3.0 + 0.5 + 0.05)
    assert md["energy.power_w.mean"] == pytest.approx((200 + 300 + 50 + 5) / 4)
    assert md["late_points"] == 0


def test_range_run_metadata_is_per_partition(defs, instance, store):
    seed(store)
    result = run_job(
        defs, "rollup_15m_job", instance, start="2026-11-20-06:45", end="2026-11-20-07:30"
    )
    mats = {
        m.partition: {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node("rollup_15m")
    }
    assert sorted(mats) == [
        "2026-11-20-06:45",
        "2026-11-20-07:00",
        "2026-11-20-07:15",
        "2026-11-20-07:30",
    ]
    assert [mats[k]["rows"] for k in sorted(mats)] == [2, 6, 2, 0]
    assert [mats[k]["devices_reporting"] for k in sorted(mats)] == [1, 3, 1, 0]
    assert mats["2026-11-20-07:15"]["energy.power_w.mean"] == 400.0
    assert "energy.power_w.mean" not in mats["2026-11-20-07:30"]
    assert all(m["partitions_in_run"] == 4 for m in mats.values())
    site = {
        m.partition: m.metadata["points"].value
        for m in result.asset_materializations_for_node("site_15m")
    }
    assert site == {
        "2026-11-20-06:45": 2,
        "2026-11-20-07:00": 8,
        "2026-11-20-07:15": 2,
        "2026-11-20-07:30": 0,
    }
