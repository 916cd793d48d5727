"""Rollup benchmark: a reference building week, compute alone vs a real Dagster backfill.

    .venv/bin/python bench/bench_rollups.py [--days 7] [--skip-dagster] [--skip-window]

1. Writes the reference week into a fresh SQLite store: 5 sites, 200 devices, 2 fields,
   one reading every 30 s, 7 days (about 8 M raw values).
2. Pure compute: the same shared functions the assets call (store.aggregate_raw,
   rollup.combine, with_work_hours, store.replace_rollups), called directly for every
   level over the week.
3. End to end: Dagster in its production topology on the local PostgreSQL (code server,
   webserver, daemon: tests/assets/production_topology.py; `--instance sqlite` for a
   `dagster dev` on a local SQLite instance instead), one backfill of all six rollup assets
   over the week launched through the GraphQL API (exactly what `telemetry backfill`
   does). Reported from the instance's own records: when the backfill daemon evaluated
   it, per run when it was created, how long its planned events took, when it was queued,
   its worker started and it ran, the slowest steps; launch -> data complete (last run
   succeeded) and the time inside runs against the pure compute.
4. One 15-minute window holding 4.5 M raw values (5,000 readings/s x 900 s) rolled up.

Prints the figures and ratios; nothing is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
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
from telemetry_core.store import Store  # noqa: E402
from telemetry_core.store.sqlite import SqliteStore  # noqa: E402
from telemetry_core.timeutil import parse_rfc3339  # noqa: E402
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, partition_key  # noqa: E402

NS = 1_000_000_000
WEEK_START = parse_rfc3339("2026-11-09T00:00:00Z")  # a Monday
SITES = [f"site-{c}" for c in "abcde"]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]
TIMINGS: dict[str, float] = {}
CPU: dict[str, float] = {}  # process CPU time (every thread): steadier than wall on a busy machine


@contextmanager
def timed(name: str):
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    TIMINGS[name] = TIMINGS.get(name, 0.0) + time.perf_counter() - t0
    CPU[name] = CPU.get(name, 0.0) + time.process_time() - c0


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


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


def write_week(store: Store, days: int, devices_per_site: int = 40, step_s: int = 30) -> int:
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


def compute_all(store: Store, config: Config, start: int, end: int) -> None:
    """Every level over [start, end), as the assets do (one chunk each): the rows of
    ROLLUP_SPECS in order, through the same compute_rollup the assets call."""
    kind = "PostgreSQL" if store.url.startswith("postgres") else "SQLite"
    for spec in ROLLUP_SPECS:
        step = f"aggregate_raw ({kind})" if spec.rule == "raw" else "read_rollups + combine"
        with timed(step):
            partials = compute_rollup(spec, store, start, end)
        with timed("with_work_hours (polars)"):
            rows = with_work_hours(partials, config, spec.scope)
        with timed(f"replace_rollups ({kind})"):
            store.replace_rollups(spec.level, start, end, rows)


def run_checks(
    store: SqliteStore, config: Config, start: int, end: int
) -> dict[str, tuple[float, float]]:
    """Every asset check's function over [start, end), timed one by one (as one range run
    of a backfill runs them): name -> (wall, CPU) seconds."""
    from telemetry_assets.checks import CHECK_FUNCTIONS

    took = {}
    for name, fn in CHECK_FUNCTIONS.items():
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn(store, config, start, end)
        took[name] = (time.perf_counter() - t0, time.process_time() - c0)
        if not result.passed and "complete" not in name:
            print(f"    check {name} FAILED: {result.metadata}")
    return took


RUN_EVENTS = ("RUN_ENQUEUED", "RUN_STARTING", "RUN_START", "RUN_SUCCESS")
PLANNED = "ASSET_MATERIALIZATION_PLANNED"


@contextmanager
def dagster_deployment(folder: Path, env: dict[str, str], instance: str):
    """(webserver URL, instance config folder, daemon log) of a running Dagster: the
    production topology on the local PostgreSQL (code server, webserver, daemon; see
    tests/assets/production_topology.py), or `dagster dev` on a local SQLite instance."""
    from telemetry_cli.dagster_graphql import wait_ready
    from telemetry_cli.demo.dagster_dev import start_dagster, stop_dagster
    from tests.conftest import free_port

    if instance == "postgres":
        from tests.assets.production_topology import (
            dagster_env,
            start_topology,
            stop_topology,
            wait_topology,
        )
        from tests.pg import temporary_database

        with temporary_database("telemetry_bench") as database:
            topo = start_topology(folder, database, env)
            try:
                problem = wait_topology(topo, 240)
                if problem:
                    raise SystemExit(f"production topology did not start: {problem}\n{topo.tail()}")
                os.environ.update(dagster_env(folder / "dagster_home", database, topo.code_port))
                yield topo.url, folder / "dagster_home", topo.log("daemon")
            finally:
                stop_topology(topo)
        return
    port, log = free_port(), folder / "dagster.log"
    proc = start_dagster(folder / "dagster_home", port, env, log_path=log)
    try:
        if not wait_ready(port, 180, proc=proc):
            raise SystemExit(f"dagster dev did not start; see {log}")
        yield f"http://127.0.0.1:{port}", folder / "dagster_home", log
    finally:
        stop_dagster(proc)


def run_timeline(home: Path, run_ids: list[str]) -> list[dict]:
    """Per run: timestamps of its lifecycle events, its planned-event span, step times."""
    import dagster as dg

    out = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id in run_ids:
            run = instance.get_run_record_by_id(run_id)
            events = {
                r.event_log_entry.dagster_event_type.name: r.event_log_entry.timestamp
                for r in instance.get_records_for_run(
                    run_id, of_type={dg.DagsterEventType[e] for e in RUN_EVENTS}
                ).records
            }
            planned = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType[PLANNED]
            ).records
            steps = {
                r.event_log_entry.step_key: r.event_log_entry.dagster_event.event_specific_data.duration_ms
                / 1000
                for r in instance.get_records_for_run(
                    run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
                ).records
            }
            out.append(
                {
                    "run_id": run_id,
                    "assets": sorted(
                        k.to_user_string() for k in run.dagster_run.asset_selection or ()
                    ),
                    "created": run.create_timestamp.timestamp(),
                    "planned": len(planned),
                    "steps": steps,
                    **events,
                }
            )
    return sorted(out, key=lambda r: r["created"])


def backfill_ticks(daemon_log: Path, backfill_id: str) -> list[float]:
    """Unix times at which the backfill daemon evaluated this backfill (from its log)."""
    import re
    from datetime import datetime

    stamp = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})")
    ticks = []
    for line in daemon_log.read_text(errors="replace").splitlines():
        if f"Evaluating asset backfill {backfill_id}" in line and (m := stamp.search(line)):
            ticks.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S %z").timestamp())
    return ticks


def dagster_backfill(folder: Path, store_url: str, days: int, instance: str) -> dict:
    from telemetry_cli.backfill.launch import (
        LAUNCH,
        backfill_params,
        first_partition,
        partition_ranges,
    )
    from telemetry_cli.backfill.progress import PROGRESS, summarize
    from telemetry_cli.dagster_graphql import graphql

    (folder / "telemetry.toml").write_text(config_toml())
    env = {"TELEMETRY_STORE_URL": store_url, "TELEMETRY_CONFIG": str(folder / "telemetry.toml")}
    t_ready = time.perf_counter()
    with dagster_deployment(folder, env, instance) as (url, home, daemon_log):
        print(
            f"  {instance} deployment ready in {time.perf_counter() - t_ready:.1f}s (not counted)"
        )
        end = WEEK_START + days * 86400 * NS
        ranges = partition_ranges(WEEK_START, end, end + HOUR_NS, first_partition(url))
        assets = [spec.asset for spec in ROLLUP_SPECS]
        params = backfill_params(ranges, assets, None, "bench")
        launched = time.time()
        result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
        backfill_id = result["backfillId"]
        last = None
        runs_q = (
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on "
            "PartitionBackfill { runs { runId status } } } }"
        )
        while True:
            data = graphql(url, PROGRESS, {"id": backfill_id})["partitionBackfillOrError"]
            status, targeted, done, running, failed = summarize(data)
            line = f"{status} {done}/{targeted} done, {running} running, {failed} failed"
            if line != last:
                print(f"  {time.time() - launched:6.1f}s  {line}")
                last = line
            if status in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                break
            time.sleep(0.5)
        marked = time.time()
        runs = graphql(url, runs_q, {"id": backfill_id})["partitionBackfillOrError"]["runs"]
        timeline = run_timeline(home, [r["runId"] for r in runs])
        ticks = [t - launched for t in backfill_ticks(daemon_log, backfill_id)]
    return {
        "status": status,
        "launched": launched,
        "marked": marked - launched,
        "runs": timeline,
        "ticks": ticks,
    }


def report_backfill(b: dict, compute: float) -> tuple[float, float]:
    """Print the breakdown; returns (launch -> data complete, seconds inside runs)."""
    t0 = b["launched"]
    print(
        "  backfill daemon evaluated it at (s after launch): "
        + ", ".join(f"{t:.1f}" for t in b["ticks"])
    )
    inside = 0.0
    for r in b["runs"]:
        at = {k: r[k] - t0 for k in RUN_EVENTS if k in r}
        inside += r.get("RUN_SUCCESS", r["RUN_START"]) - r["RUN_START"]
        print(
            f"  run {r['run_id'][:8]} ({', '.join(r['assets'])}): created {r['created'] - t0:5.1f}s,"
            f" {r['planned']} planned events (written until it was queued:"
            f" {r.get('RUN_ENQUEUED', r['created']) - r['created']:.1f}s), queued"
            f" {at.get('RUN_ENQUEUED', 0):5.1f}s, worker started {at.get('RUN_STARTING', 0):5.1f}s,"
            f" running {at.get('RUN_START', 0):5.1f}s, done {at.get('RUN_SUCCESS', 0):5.1f}s"
            f" (inside {r.get('RUN_SUCCESS', 0) - r['RUN_START']:.1f}s)"
        )
        top = sorted(r["steps"].items(), key=lambda kv: -kv[1])
        print(
            "      steps: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in top[:6])
            + f", {len(top) - 6} more {sum(v for _, v in top[6:]):.1f}s"
        )
    data_done = max(r.get("RUN_SUCCESS", 0) for r in b["runs"]) - t0
    print(
        f"  data complete (last run succeeded) {data_done:.1f}s after launch; the daemon "
        f"marked the backfill {b['status']} at {b['marked']:.1f}s"
    )
    if b["ticks"]:
        print(
            f"  of which {b['ticks'][0]:.1f}s until the daemon's first pass (the phase: 0-30 s,"
            f" wherever the launch falls in its 30 s cycle; here the daemon started just before"
            f" the launch) and {data_done - b['ticks'][0]:.1f}s from that pass to data complete"
        )
    print(f"  inside runs {inside:.1f}s = {inside / compute:.1f}x compute ({compute:.1f}s)")
    return data_done, inside


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
    parser.add_argument(
        "--subset-planned-events",
        action="store_true",
        help="set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 in every Dagster process: "
        "one planned event per asset and run instead of one per partition (Dagster then no "
        "longer marks an asset's partitions failed or in progress; measured, not deployed)",
    )
    parser.add_argument(
        "--instance",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="postgres: the production topology on the local PostgreSQL (default); "
        "sqlite: dagster dev on a local SQLite instance",
    )
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-rollups-"))
    folder.mkdir(parents=True, exist_ok=True)
    config = bench_config()
    end = WEEK_START + args.days * 86400 * NS

    db = folder / "week.db"
    for stale in (db, db.with_name("week.db-wal"), db.with_name("week.db-shm")):
        stale.unlink(missing_ok=True)  # a reused --dir: rolled-up marks would make late marks
    store = SqliteStore(str(db))
    print(f"1) reference week into {db}")
    t0 = time.perf_counter()
    n = write_week(store, args.days)
    print(f"  {n:,} raw values written in {time.perf_counter() - t0:.1f}s (not counted)")

    print(
        f"\n2) pure compute, all six levels over {args.days} days ({partition_key(WEEK_START)} ..)"
    )
    TIMINGS.clear()
    CPU.clear()
    print(f"  ({load()})")
    t0, c0 = time.perf_counter(), time.process_time()
    compute_all(store, config, WEEK_START, end)
    compute = time.perf_counter() - t0
    print(f"  {compute:.2f}s (CPU {time.process_time() - c0:.2f}s)")
    for name, secs in sorted(TIMINGS.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<28} {secs:6.2f}s  CPU {CPU[name]:6.2f}s")
    rows = {
        lvl: store.read_rollups(lvl, WEEK_START, end).height for lvl in ("15m", "1h", "site_1h")
    }
    print(f"  rows: {rows}")
    print(f"\n2b) every asset check over the same {args.days} days")
    print(f"  ({load()})")
    took = run_checks(store, config, WEEK_START, end)
    print(
        f"  {sum(w for w, _ in took.values()):.2f}s (CPU {sum(c for _, c in took.values()):.2f}s)"
    )
    for name, (wall, cpu) in sorted(took.items(), key=lambda kv: -kv[1][1])[:4]:
        print(f"    {name:<34} {wall:6.2f}s  CPU {cpu:6.2f}s")
    raw_cpu = took["rollup_15m_matches_raw_counts"][1]
    agg_cpu = CPU.get("aggregate_raw (SQLite)", 0.0)
    if agg_cpu:
        print(f"  raw check / aggregate_raw, CPU: {raw_cpu / agg_cpu:.2f}")
    store.close()

    if not args.skip_dagster:
        print(
            f"\n3) end-to-end Dagster backfill of the six assets over the same range ({args.instance})"
            f" ({load()})"
        )
        if args.subset_planned_events:
            os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
        b = dagster_backfill(folder, f"sqlite:///{db}", args.days, args.instance)
        wall, inside = report_backfill(b, compute)
        print(
            f"  goals: launch -> data complete <= 60 s: {'met' if wall <= 60 else 'MISSED'} "
            f"({wall:.1f}s); inside runs <= 2x compute: "
            f"{'met' if inside <= 2 * compute else 'MISSED'} ({inside / compute:.1f}x)"
        )
        print(f"  ({load()} at the end)")

    if not args.skip_window:
        big_window(folder, config, args.window_values)
    print(f"\nwork folder: {folder}")


if __name__ == "__main__":
    main()
