"""PostgreSQL store benchmark: ingest, rollups from raw, and how cost grows with the fleet.

    .venv/bin/python bench/bench_postgres.py [--runs 3] [--quick] [--scales 1,4,16]

Every figure is measured in this one run on this machine, each against its baseline:

1. Ingest through the real daemon (pre-published messages, a fresh nats-server, a fresh
   database per run), 2-field readings:
   * 1 reading per message into ``postgresql://`` vs the nats-py pull+ack ceiling
     (bench_ingest's baseline; goal >= 0.7x) and vs the SQLite store;
   * 100 readings per message into ``postgresql://`` vs a bare binary ``COPY`` + merge
     of the same rows in the daemon's batch size (5,000 points) into a plain keyed table
     (goal >= 80%), and vs SQLite.
2. The reference week (5 sites x 40 devices x 2 fields every 30 s, ~8 M raw values) rolled
   up from raw by the store (``aggregate_raw``, goal <= 2 s) and all six levels as the
   assets compute them (goal <= 4 s), vs polars over the same points in memory.
3. One day of the reference fleet at 1x, 4x and 16x its devices (about 1.2 M, 4.6 M and
   18 M raw values), 15-minute rollup from raw on SQLite and on PostgreSQL, printed as
   seconds per million raw values (flat is the goal).

Needs PostgreSQL (``TELEMETRY_TEST_POSTGRES_URL``, default postgres@127.0.0.1:5432, an
account that may create databases); each part uses throwaway databases. Prints medians;
nothing is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_ingest import ceiling, daemon_run  # noqa: E402
from bench_rollups import (  # noqa: E402
    SITES,
    TIMINGS,
    WEEK_START,
    bench_config,
    compute_all,
    write_week,
)

from telemetry_cli.ports import free_port  # noqa: E402
from telemetry_cli.services import start_nats, stop_process  # noqa: E402
from telemetry_core.rollup import rollup_raw  # noqa: E402
from telemetry_core.store import Store, open_store  # noqa: E402
from telemetry_core.windows import WINDOW_15M_NS  # noqa: E402
from tests.pg import database_url, temporary_database  # noqa: E402

NS = 1_000_000_000
DAY_NS = 86_400 * NS
BATCH = 5_000  # the daemon's default batch_size: points per store commit


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


# -- 1. ingest -------------------------------------------------------------------------
def daemon_pg(url: str, n: int, per_msg: int, work: Path) -> tuple[float, float]:
    """Readings/s and the event loop's CPU µs per message."""
    with temporary_database("bench_pg") as db:
        rate, _rss, cpu = daemon_run(url, n, per_msg, work, database_url(db))
        return rate, cpu


def bare_copy_merge(n_msgs: int, per_msg: int) -> float:
    """Readings/s of binary COPY into a staging table + one merge per 5,000 points into a
    keyed table (series id, time), no partitions, no names, no late marks: the same rows
    the daemon stores for ``n_msgs`` messages of ``per_msg`` readings (bench_ingest's
    publisher: 200 devices, 2 fields a reading)."""
    import psycopg

    base = time.time_ns() - 600 * NS
    rows = []
    for i in range(n_msgs):
        dev = i % 200
        for k in range(per_msg):
            t = base + (i * per_msg + k) * 1000
            rows.append((dev * 2, t, k + 0.5, i + 1))
            rows.append((dev * 2 + 1, t, 0.001 * k, i + 1))
    with temporary_database("bench_bare") as db, psycopg.connect(database_url(db)) as conn:
        conn.execute(
            "CREATE TABLE bare (series_id integer NOT NULL, time bigint NOT NULL, "
            "value double precision NOT NULL, seq bigint NOT NULL, PRIMARY KEY (series_id, time))"
        )
        conn.execute(
            "CREATE TEMP TABLE stage (series_id integer, time bigint, value double precision, "
            "seq bigint, ord integer) ON COMMIT DELETE ROWS"
        )
        conn.commit()
        t0 = time.perf_counter()
        for first in range(0, len(rows), BATCH):
            with conn.transaction(), conn.cursor() as cur:
                copy_sql = "COPY stage FROM STDIN (FORMAT BINARY)"
                with cur.copy(copy_sql) as copy:
                    copy.set_types(["int4", "int8", "float8", "int8", "int4"])
                    for j, row in enumerate(rows[first : first + BATCH]):
                        copy.write_row((*row, j))
                cur.execute(
                    "INSERT INTO bare SELECT DISTINCT ON (series_id, time) series_id, time, "
                    "value, seq FROM stage ORDER BY series_id, time, seq DESC, ord DESC "
                    "ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value, "
                    "seq = excluded.seq WHERE excluded.seq > bare.seq"
                )
        elapsed = time.perf_counter() - t0
    return n_msgs * per_msg / elapsed


def ingest(runs: int, quick: bool) -> None:
    single_n = 40_000 if quick else 150_000
    batched_n = 800 if quick else 3_000
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        work = Path(tmp)
        port = free_port()
        nats = start_nats(port, work / "js")
        url = f"nats://127.0.0.1:{port}"
        try:
            ceil, pg1, lite1, pg100, lite100, bare = [], [], [], [], [], []
            cpu_c, cpu_p, cpu_s = [], [], []  # event-loop CPU µs per message
            for _ in range(runs):  # alternating, so the machine's other load hits all alike
                rate, cpu = ceiling(url, single_n)
                ceil.append(rate)
                cpu_c.append(cpu)
                rate, cpu = daemon_pg(url, single_n, 1, work)
                pg1.append(rate)
                cpu_p.append(cpu)
                rate, _rss, cpu = daemon_run(url, single_n, 1, work)
                lite1.append(rate)
                cpu_s.append(cpu)
                pg100.append(daemon_pg(url, batched_n, 100, work)[0])
                lite100.append(daemon_run(url, batched_n, 100, work)[0])
                bare.append(bare_copy_merge(batched_n, 100))
        finally:
            stop_process(nats)
    c, p1, s1 = (statistics.median(x) for x in (ceil, pg1, lite1))
    uc, up, us = (statistics.median(x) for x in (cpu_c, cpu_p, cpu_s))
    p100, s100, b = (statistics.median(x) for x in (pg100, lite100, bare))
    print(
        f"ingest (medians of {runs} runs; readings of 2 fields; {single_n:,} and {batched_n:,} messages)"
    )
    print(
        f"  baseline nats-py pull+ack ceiling       : {c:>10,.0f} msg/s  event loop {uc:.1f} µs CPU/msg"
    )
    print(
        f"  1 reading/msg    -> postgresql://       : {p1:>10,.0f} readings/s  {p1 / c:.2f}x baseline (goal >= 0.70x)"
        f"  event loop {up:.1f} µs CPU/msg"
    )
    print(
        f"  1 reading/msg    -> sqlite://           : {s1:>10,.0f} readings/s  {s1 / c:.2f}x baseline; postgresql {p1 / s1:.2f}x sqlite"
        f"  event loop {us:.1f} µs CPU/msg"
    )
    print(f"  bare binary COPY + merge, 5,000/commit  : {b:>10,.0f} readings/s")
    print(
        f"  100 readings/msg -> postgresql://       : {p100:>10,.0f} readings/s  {p100 / b:.0%} of bare COPY + merge (goal >= 80%)"
    )
    print(f"  100 readings/msg -> sqlite://           : {s100:>10,.0f} readings/s  postgresql {p100 / s100:.2f}x sqlite")  # fmt: skip


# -- 2. the reference week ---------------------------------------------------------------
def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def week(runs: int, days: int) -> None:
    config = bench_config()
    start, end = WEEK_START, WEEK_START + days * DAY_NS
    with temporary_database("bench_week") as db:
        store = open_store(database_url(db))
        t0 = time.perf_counter()
        n = write_week(store, days)
        wrote = time.perf_counter() - t0
        analyze(store)
        agg = median_of(runs, lambda: timed(lambda: store.aggregate_raw(start, end, WINDOW_15M_NS)))
        TIMINGS.clear()
        every = median_of(runs, lambda: timed(lambda: compute_all(store, config, start, end)))
        steps = ", ".join(f"{k} {v / runs:.2f} s" for k, v in TIMINGS.items())
        frame = store.scan_points(start, end)
        mem = median_of(runs, lambda: timed(lambda: rollup_raw(frame, WINDOW_15M_NS)))
        store.close()
    print(
        f"reference week ({days} days, {n:,} raw values; written in {wrote:.1f} s = {n / wrote:,.0f}/s)"
    )
    print(f"  15-minute rollup from raw in PostgreSQL : {agg:>6.2f} s  (goal <= 2 s)")
    print(f"  all six levels as the assets compute    : {every:>6.2f} s  (goal <= 4 s)")
    print(f"    of which (means): {steps}")
    print(f"  polars in memory, same points (15m)     : {mem:>6.2f} s  PostgreSQL {agg / mem:.1f}x polars")  # fmt: skip


def analyze(store: Store) -> None:
    """Fresh statistics after a bulk load (autovacuum would get there; a benchmark waits
    for nobody)."""
    import psycopg

    with psycopg.connect(store.url.replace("postgres://", "postgresql://", 1)) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# -- 3. scaling ------------------------------------------------------------------------------
def write_day(store: Store, devices_per_site: int) -> int:
    rng = random.Random(7)
    total, batch = 0, []
    for i in range(86_400 // 30):
        t = WEEK_START + i * 30 * NS
        for site in SITES:
            for d in range(devices_per_site):
                p = rng.random() * 5000.0
                batch.append(("energy", site, f"meter-{d:04d}", "power_w", t, p))
                batch.append(("energy", site, f"meter-{d:04d}", "energy_kwh", t, p / 120_000))
        if len(batch) >= 200_000:
            store.write_points(batch)
            total, batch = total + len(batch), []
    if batch:
        store.write_points(batch)
        total += len(batch)
    return total


def scaling(runs: int, scales: list[int]) -> None:
    print("one day's 15-minute rollup from raw, s per million raw values (flat is the goal)")
    print(f"  {'fleet':>6} {'raw values':>12} {'sqlite':>10} {'postgresql':>12}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for k in scales:
            per = {}
            n = 0
            for kind in ("sqlite", "postgresql"):
                if kind == "sqlite":
                    store = open_store(f"sqlite:///{Path(tmp) / f'scale{k}.db'}")
                    n = write_day(store, 40 * k)
                    per[kind] = median_of(runs, lambda s=store: agg_day(s)) / (n / 1e6)
                    store.close()
                else:
                    with temporary_database("bench_scale") as db:
                        store = open_store(database_url(db))
                        write_day(store, 40 * k)
                        analyze(store)
                        per[kind] = median_of(runs, lambda s=store: agg_day(s)) / (n / 1e6)
                        store.close()
            print(f"  {k:>5}x {n:>12,} {per['sqlite']:>9.3f}s {per['postgresql']:>11.3f}s")


def agg_day(store: Store) -> float:
    return timed(lambda: store.aggregate_raw(WEEK_START, WEEK_START + DAY_NS, WINDOW_15M_NS))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller volumes, 1x and 4x only")
    parser.add_argument("--scales", default="1,4,16", help="fleet multiples (default 1,4,16)")
    parser.add_argument("--days", type=int, default=7, help="reference week length")
    parser.add_argument(
        "--only", choices=["ingest", "week", "scaling"], help="one part of the benchmark"
    )
    args = parser.parse_args()
    scales = [1, 4] if args.quick else [int(x) for x in args.scales.split(",")]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {load}")
    if args.only in (None, "ingest"):
        ingest(args.runs, args.quick)
    if args.only in (None, "week"):
        week(args.runs, 1 if args.quick else args.days)
    if args.only in (None, "scaling"):
        scaling(args.runs, scales)


if __name__ == "__main__":
    main()
