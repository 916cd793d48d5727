"""Rollup benchmark: a reference building week, compute alone vs a real Dagster backfill.

    .venv/bin/python bench/bench_rollups.py [--days 7] [--skip-dagster] [--skip-window]

1. Writes the reference week into a fresh SQLite store: 5 sites, 200 devices, 2 fields,
   one reading every 30 s, 7 days (about 8 M raw values).
2. Pure compute: the same shared functions the assets call (store.aggregate_raw,
   rollup.combine, with_work_hours, store.replace_rollups), called directly for every
   level over the week.
3. End to end: a throwaway `dagster dev` (webserver + daemon, local SQLite instance), one
   backfill of all six rollup assets over the week launched through the GraphQL API
   (exactly what `telemetry backfill` does), wall time from launch to completion.
4. One 15-minute window holding 4.5 M raw values (5,000 readings/s x 900 s) rolled up.

Prints the figures and ratios; nothing is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from telemetry_core.config import Config, Site, WorkHours  # noqa: E402
from telemetry_core.rollup import ROLLUP_SPECS, compute_rollup, with_work_hours  # noqa: E402
from telemetry_core.store.sqlite import SqliteStore  # noqa: E402
from telemetry_core.timeutil import parse_rfc3339  # noqa: E402
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, partition_key  # noqa: E402

NS = 1_000_000_000
WEEK_START = parse_rfc3339("2026-11-09T00:00:00Z")  # a Monday
SITES = [f"site-{c}" for c in "abcde"]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]
TIMINGS: dict[str, float] = {}


@contextmanager
def timed(name: str):
    t0 = time.perf_counter()
    yield
    TIMINGS[name] = TIMINGS.get(name, 0.0) + time.perf_counter() - t0


def bench_config() -> Config:
    from datetime import time as dtime

    hours = WorkHours(frozenset(range(5)), dtime(8), dtime(18))
    sites = {s: Site(s, z, hours, 40) for s, z in zip(SITES, ZONES, strict=True)}
    return Config(sites=sites, fields={"energy.energy_kwh": "delta", "energy.power_w": "gauge"})


def config_toml() -> str:
    lines = []
    for s, z in zip(SITES, ZONES, strict=True):
        lines += [
            f"[sites.{s}]",
            f'timezone = "{z}"',
            'work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }',
            "expected_devices = 40",
            "",
        ]
    lines += ["[fields]", '"energy.energy_kwh" = "delta"', '"energy.power_w" = "gauge"', ""]
    return "\n".join(lines)


def write_week(store: SqliteStore, days: int, devices_per_site: int = 40, step_s: int = 30) -> int:
    rng = random.Random(42)
    steps = days * 86400 // step_s
    total = 0
    batch: list[tuple] = []
    for i in range(steps):
        t = WEEK_START + i * step_s * NS
        for site in SITES:
            for d in range(devices_per_site):
                dev = f"meter-{d:03d}"
                p = rng.random() * 5000.0
                batch.append(("energy", site, dev, "power_w", t, p))
                batch.append(("energy", site, dev, "energy_kwh", t, p / 120_000.0))
        if len(batch) >= 400_000:
            store.write_points(batch)
            total += len(batch)
            batch = []
    if batch:
        store.write_points(batch)
        total += len(batch)
    return total


def compute_all(store: SqliteStore, config: Config, start: int, end: int) -> None:
    """Every level over [start, end), as the assets do (one chunk each): the rows of
    ROLLUP_SPECS in order, through the same compute_rollup the assets call."""
    for spec in ROLLUP_SPECS:
        step = "aggregate_raw (SQLite)" if spec.rule == "raw" else "read_rollups + combine"
        with timed(step):
            partials = compute_rollup(spec, store, start, end)
        with timed("with_work_hours (polars)"):
            rows = with_work_hours(partials, config, spec.scope)
        with timed("replace_rollups (SQLite)"):
            store.replace_rollups(spec.level, start, end, rows)


def run_checks(store: SqliteStore, config: Config, start: int, end: int) -> dict[str, float]:
    """Every asset check's function over [start, end), timed one by one (as one range run
    of a backfill runs them)."""
    from telemetry_assets.checks import CHECK_FUNCTIONS

    took = {}
    for name, fn in CHECK_FUNCTIONS.items():
        t0 = time.perf_counter()
        result = fn(store, config, start, end)
        took[name] = time.perf_counter() - t0
        if not result.passed and "complete" not in name:
            print(f"    check {name} FAILED: {result.metadata}")
    return took


def dagster_backfill(folder: Path, store_url: str, days: int) -> float:
    from telemetry_cli.backfill import (
        LAUNCH,
        PROGRESS,
        backfill_params,
        first_partition,
        partition_ranges,
        summarize,
    )
    from telemetry_cli.dagster_local import graphql, start_dagster, stop_dagster, wait_ready
    from tests.conftest import free_port

    (folder / "telemetry.toml").write_text(config_toml())
    env = {"TELEMETRY_STORE_URL": store_url, "TELEMETRY_CONFIG": str(folder / "telemetry.toml")}
    port = free_port()
    log = folder / "dagster.log"
    proc = start_dagster(folder / "dagster_home", port, env, log_path=log)
    try:
        t0 = time.perf_counter()
        if not wait_ready(port, 180, proc=proc):
            raise SystemExit(f"dagster dev did not start; see {log}")
        print(f"  dagster dev ready in {time.perf_counter() - t0:.1f}s (not counted)")
        url = f"http://127.0.0.1:{port}"
        end = WEEK_START + days * 86400 * NS
        ranges = partition_ranges(WEEK_START, end, end + HOUR_NS, first_partition(url))
        assets = [spec.asset for spec in ROLLUP_SPECS]
        params = backfill_params(ranges, assets, None, "bench")
        t0 = time.perf_counter()
        result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
        backfill_id = result["backfillId"]
        last = None
        data_done = None
        while True:
            data = graphql(url, PROGRESS, {"id": backfill_id})["partitionBackfillOrError"]
            status, targeted, done, running, failed = summarize(data)
            line = f"{status} {done}/{targeted} done, {running} running, {failed} failed"
            if line != last:
                print(f"  {time.perf_counter() - t0:6.1f}s  {line}")
                last = line
            if status in (
                "COMPLETED",
                "COMPLETED_SUCCESS",
                "COMPLETED_FAILED",
                "FAILED",
                "CANCELED",
            ):
                break
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        runs = graphql(
            url,
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on "
            "PartitionBackfill { runs { runId status startTime endTime } } } }",
            {"id": backfill_id},
        )["partitionBackfillOrError"]["runs"]
        busy = sum((r["endTime"] or 0) - (r["startTime"] or 0) for r in runs)
        print(f"  {len(runs)} runs, {busy:.1f}s inside runs (start to end), status {status}")
        print(f"  daemon marked the backfill {status} after {wall:.1f}s")
        return data_done or wall
    finally:
        stop_dagster(proc)


def big_window(folder: Path, config: Config, values: int) -> None:
    store = SqliteStore(str(folder / "window.db"))
    devices = values // (2 * 900)  # 2 fields, one reading per device per second
    start = WEEK_START
    print(
        f"\n4) one 15-minute window: {devices} devices x 2 fields x 900 s = {devices * 1800:,} values"
    )
    rng = random.Random(1)
    t0 = time.perf_counter()
    batch: list[tuple] = []
    for s in range(900):
        t = start + s * NS
        for d in range(devices):
            site = SITES[d % 5]
            p = rng.random() * 5000.0
            batch.append(("energy", site, f"m{d:05d}", "power_w", t, p))
            batch.append(("energy", site, f"m{d:05d}", "energy_kwh", t, p / 3.6e6))
        if len(batch) >= 500_000:
            store.write_points(batch)
            batch = []
    if batch:
        store.write_points(batch)
    print(f"  written in {time.perf_counter() - t0:.1f}s (not counted)")
    TIMINGS.clear()
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    compute_all(store, config, start, start + WINDOW_15M_NS)
    profile.disable()
    took = time.perf_counter() - t0
    print(
        f"  rolled up (all six levels) in {took:.2f}s  (goal <= 5 s: {'met' if took <= 5 else 'MISSED'})"
    )
    for name, secs in sorted(TIMINGS.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<28} {secs:6.2f}s")
    if took > 5:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
        print(out.getvalue())
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--window-values", type=int, default=4_500_000)
    parser.add_argument("--skip-dagster", action="store_true")
    parser.add_argument("--skip-window", action="store_true")
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-rollups-"))
    folder.mkdir(parents=True, exist_ok=True)
    config = bench_config()
    end = WEEK_START + args.days * 86400 * NS

    db = folder / "week.db"
    store = SqliteStore(str(db))
    print(f"1) reference week into {db}")
    t0 = time.perf_counter()
    n = write_week(store, args.days)
    print(f"  {n:,} raw values written in {time.perf_counter() - t0:.1f}s (not counted)")

    print(
        f"\n2) pure compute, all six levels over {args.days} days ({partition_key(WEEK_START)} ..)"
    )
    TIMINGS.clear()
    t0 = time.perf_counter()
    compute_all(store, config, WEEK_START, end)
    compute = time.perf_counter() - t0
    print(f"  {compute:.2f}s")
    for name, secs in sorted(TIMINGS.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<28} {secs:6.2f}s")
    rows = {
        lvl: store.read_rollups(lvl, WEEK_START, end).height for lvl in ("15m", "1h", "site_1h")
    }
    print(f"  rows: {rows}")
    print(f"\n2b) every asset check over the same {args.days} days")
    took = run_checks(store, config, WEEK_START, end)
    print(f"  {sum(took.values()):.2f}s")
    for name, secs in sorted(took.items(), key=lambda kv: -kv[1])[:4]:
        print(f"    {name:<34} {secs:6.2f}s")
    store.close()

    if not args.skip_dagster:
        print("\n3) end-to-end Dagster backfill of the six assets over the same range")
        wall = dagster_backfill(folder, f"sqlite:///{db}", args.days)
        print(
            f"  end to end (launch -> data complete, as `telemetry backfill` reports it) "
            f"{wall:.1f}s; compute {compute:.1f}s; ratio {wall / compute:.1f}x"
        )
        print(
            f"  goals: week <= 60 s end to end: {'met' if wall <= 60 else 'MISSED'}; "
            f"overhead <= 2x compute: {'met' if wall <= 2 * compute else 'MISSED'}"
        )

    if not args.skip_window:
        big_window(folder, config, args.window_values)
    print(f"\nwork folder: {folder}")


if __name__ == "__main__":
    main()
