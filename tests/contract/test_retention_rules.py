"""Retention on every backend, with the rollup assets' real check functions: nothing that
was not rolled up, not materialised or not passing its checks is deleted; a dry run
deletes nothing; a re-run deletes nothing more; hourly rollups survive.

"Materialised" (Dagster's records) is a plain set here: the Dagster side of it is tested
with real runs in tests/assets/test_retention_job.py.
"""

from __future__ import annotations

import polars as pl
import pytest

from telemetry_assets.jobs.retention import check_verifier
from telemetry_core.config import parse_config
from telemetry_core.retention import ROLLUP_15M, apply_retention
from telemetry_core.rollup import ROLLUP_SPECS, compute_rollup, with_work_hours
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS, windows_between

W = WINDOW_15M_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % DAY_NS  # a day start, 2026
HOURS = 4
NOW = T0 + 3 * DAY_NS  # raw_days = 1, rollup_15m_days = 2: all four hours are old enough
CONFIG = parse_config(
    {
        "sites": {"site-a": {"timezone": "Europe/Berlin"}},
        "fields": {"energy.energy_kwh": "delta", "energy.power_w": "gauge"},
        "retention": {"raw_days": 1, "rollup_15m_days": 2},
    }
)
LEVELS = [s.level for s in ROLLUP_SPECS]
HOURLY = [s.level for s in ROLLUP_SPECS if s.grain == "1h"]
FAR = (0, 2**62)

LATE = T0 + HOUR_NS + 2 * W  # hour 1, third quarter: a point arrives after its rollup
UNMATERIALISED_HOUR = T0 + 2 * HOUR_NS  # rollup_1h never recorded for hour 2
TAMPERED = T0 + 3 * HOUR_NS  # hour 3, first quarter: its site rows lost from the store


def _points(seed: int = 1) -> list:
    import random

    rng = random.Random(seed)
    out = []
    for site in ("site-a", "site-b"):
        for device in ("m1", "m2"):
            for i in range(HOURS * 12):  # every 5 minutes
                t = T0 + i * 300 * 10**9 + rng.randrange(10**9)
                out.append(("energy", site, device, "power_w", t, rng.uniform(0, 500)))
                out.append(("energy", site, device, "energy_kwh", t, rng.uniform(0, 1)))
    return out


def _roll_up(store, start: int, end: int) -> None:
    """What the rollup assets do, every level in dependency order."""
    for spec in ROLLUP_SPECS:
        rows = with_work_hours(compute_rollup(spec, store, start, end), CONFIG, spec.scope)
        store.replace_rollups(spec.level, start, end, rows)


def _snapshot(store) -> dict:
    out = {level: store.read_rollups(level, *FAR) for level in LEVELS}
    out["raw"] = store.read_points(*FAR)
    return out


def _materialised(asset: str) -> set[int]:
    spec = next(s for s in ROLLUP_SPECS if s.asset == asset)
    starts = set(windows_between(T0, T0 + HOURS * HOUR_NS, spec.width_ns))
    return starts - {UNMATERIALISED_HOUR} if asset == "rollup_1h" else starts


def _run(store, *, dry_run: bool):
    return apply_retention(
        store,
        CONFIG,
        NOW,
        verify=check_verifier(store, CONFIG),
        materialised=_materialised,
        dry_run=dry_run,
    )


@pytest.fixture
def seeded(backend):
    store = backend.store
    store.write_points(_points())
    _roll_up(store, T0, T0 + HOURS * HOUR_NS)
    # A late point after the rollup (the store marks its window late), mark cleared as
    # if by the sensor without the re-run: only the raw reconciliation can catch it.
    result = store.write_points([("energy", "site-a", "m1", "power_w", LATE + 7, 1.0)])
    assert result.late_windows == ((LATE, "site-a"),)
    store.clear_late_windows([(LATE, "site-a")], 2**62)
    assert store.late_windows() == []
    # The site rows of one window lost (a replace with nothing): site_15m check fails.
    empty = store.read_rollups("site_15m", 0, 0)
    store.replace_rollups("site_15m", TAMPERED, TAMPERED + W, empty)
    return store


def _kept(report, what: str) -> dict[int, str]:
    return {k.start: k.reason for k in report.kept if k.what == what}


def test_dry_run_reports_and_deletes_nothing_then_the_run_deletes_exactly_that(seeded):
    store = seeded
    before = _snapshot(store)
    dry = _run(store, dry_run=True)
    after = _snapshot(store)
    for key, frame in before.items():
        assert after[key].equals(frame), key
    assert dry.raw_windows_deleted == dry.raw_points_deleted == 0
    assert sum(dry.rollup_rows_deleted.values()) == 0

    # hour 0: all four windows; hour 1: all but the late one; hour 3: all but the tampered
    kept_raw = _kept(dry, "raw")
    assert kept_raw == {
        LATE: "check_failed",
        **{ws: "not_materialised" for ws in range(UNMATERIALISED_HOUR, TAMPERED, W)},
        TAMPERED: "check_failed",
    }
    details = {k.start: k.detail for k in dry.kept if k.what == "raw"}
    assert "rollup_15m_matches_raw_counts" in details[LATE]
    assert "site_15m_matches_devices" in details[TAMPERED]
    assert details[UNMATERIALISED_HOUR] == "rollup_1h"
    assert dry.raw_windows_eligible == 4 * HOURS - len(kept_raw)
    # 15-minute rollups: only hour 0 lost all its raw points; the others keep theirs
    assert _kept(dry, ROLLUP_15M) == {T0 + h * HOUR_NS: "raw_kept" for h in (1, 2, 3)}
    assert dry.rollup_15m_hours_eligible == 1

    real = _run(store, dry_run=False)
    assert real.raw_windows_deleted == dry.raw_windows_eligible
    assert real.raw_points_deleted == dry.raw_points_eligible > 0
    assert real.rollup_rows_deleted == dry.rollup_rows_eligible
    assert real.rollup_15m_hours_deleted == 1
    assert _kept(real, "raw") == kept_raw

    gone = _snapshot(store)
    raw_left = set(gone["raw"]["time"].to_list())
    kept_times = {t for t in before["raw"]["time"].to_list() if (t - t % W) in kept_raw}
    assert raw_left == kept_times  # exactly the kept windows' points, all of them
    for level in HOURLY:  # hourly rollups all stay, untouched
        assert gone[level].equals(before[level]), level
    for level in ("15m", "site_15m", "portfolio_15m"):
        want = before[level].filter(pl.col("window_start") >= T0 + HOUR_NS)
        assert gone[level].equals(want), level

    again = _run(store, dry_run=False)
    assert again.raw_windows_deleted == again.raw_points_deleted == 0
    assert sum(again.rollup_rows_deleted.values()) == 0
    assert _kept(again, "raw") == kept_raw
    assert _snapshot(store)["raw"].equals(gone["raw"])


def test_fixed_windows_go_on_the_next_run(seeded):
    store = seeded
    _run(store, dry_run=False)
    # The late window and the tampered one are rolled up again (as the sensor would).
    _roll_up(store, T0 + HOUR_NS, T0 + 2 * HOUR_NS)
    _roll_up(store, TAMPERED, TAMPERED + HOUR_NS)
    hourly = {level: store.read_rollups(level, *FAR) for level in HOURLY}
    report = _run(store, dry_run=False)
    assert report.raw_windows_deleted == 2
    assert set(_kept(report, "raw")) == set(range(UNMATERIALISED_HOUR, TAMPERED, W))
    # hours 1 and 3 have no raw points left: their quarters go too, hour 2 stays
    assert report.rollup_15m_hours_deleted == 2
    left = store.read_rollups("15m", *FAR)["window_start"].unique().sort().to_list()
    assert left == list(range(UNMATERIALISED_HOUR, TAMPERED, W))
    for level in HOURLY:
        assert store.read_rollups(level, *FAR).equals(hourly[level]), level


def test_a_pending_late_mark_keeps_its_window(backend):
    store = backend.store
    store.write_points(_points())
    _roll_up(store, T0, T0 + HOURS * HOUR_NS)
    store.write_points([("energy", "site-b", "m2", "energy_kwh", T0 + 5, 0.5)])  # marked
    assert [m.window_start for m in store.late_windows()] == [T0]
    report = _run(store, dry_run=False)
    assert _kept(report, "raw")[T0] == "late_mark"
    assert store.read_points(T0, T0 + W).height > 0
