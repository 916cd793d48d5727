"""PostgreSQL store benchmark: one run in a throwaway database, figures and ratios printed.

    .venv/bin/python bench/bench_postgres_store.py [--series 500] [--every-s 60]

Measures, on the same data in the same run (a day of points written in time order, as
the daemon writes them):
  1. write_points throughput: new points, then the same batches again (an exact
     redelivery), then rewrites with a higher sequence; dead tuples left by the
     redelivery (the merge skips identical rows) against a plain ``>=`` condition;
  2. a 15-minute ``aggregate_raw`` and ``read_points`` with the BRIN index on time,
     without any time index (sequential scan of the day partition), and with a btree
     on time, plus each index's size.
The server is shared and loaded: read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from telemetry_core.store import open_store
from telemetry_core.windows import DAY_NS, WINDOW_15M_NS
from tests.pg import database_url, temporary_database

DAY = 1_795_000_000_000_000_000 // DAY_NS
T0 = DAY * DAY_NS


def _batches(series: int, every_s: int, per_batch: int) -> list[list[Any]]:
    every = every_s * 10**9
    points = [  # devices read at their own offsets within the interval (no shared times)
        ("energy", f"site-{d % 4}", f"meter-{d}", "power_w", T0 + i * every + d * 7919 % every,
         float(i))
        for i in range(86_400 // every_s)
        for d in range(series)
    ]  # fmt: skip
    return [points[k : k + per_batch] for k in range(0, len(points), per_batch)]


def _timed(fn: Any, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _xid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT txid_current()").fetchone()
    return int(row[0]) if row else 0


def _touched_since(conn: psycopg.Connection[Any], xid: int) -> int:
    """Rows written (inserted or updated) by transactions after ``xid`` (a fresh
    database: no wraparound to mind)."""
    row = conn.execute(
        "SELECT count(*) FROM raw WHERE xmin::text::bigint > %s", (xid % 2**32,)
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--every-s", type=int, default=60)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    explain = args.explain
    with temporary_database("telemetry_bench") as name:
        url = database_url(name)
        store = open_store(url)
        batches = _batches(args.series, args.every_s, args.batch)
        n = sum(len(b) for b in batches)
        t = time.perf_counter()
        for b in batches:
            store.write_points(b, seqs=[10] * len(b))
        new = n / (time.perf_counter() - t)
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("VACUUM ANALYZE raw")
        xid = _xid(conn)
        t = time.perf_counter()
        for b in batches[:10]:
            store.write_points(b, seqs=[10] * len(b))
        m = sum(len(b) for b in batches[:10])
        redelivered = m / (time.perf_counter() - t)
        upd = _touched_since(conn, xid)
        xid = _xid(conn)
        t = time.perf_counter()
        for b in batches[:10]:
            store.write_points(b, seqs=[11] * len(b))
        rewritten = m / (time.perf_counter() - t)
        upd2 = _touched_since(conn, xid)
        print(f"{n} points, {args.series} series, one day; batches of {args.batch}")
        print(f"write new points:        {new:>9,.0f} points/s")
        print(f"exact redelivery:        {redelivered:>9,.0f} points/s, {upd} rows updated")
        print(f"rewrite (higher seq):    {rewritten:>9,.0f} points/s, {upd2} rows updated")

        conn.execute("VACUUM ANALYZE raw")
        ws = T0 + 40 * WINDOW_15M_NS

        def agg() -> None:
            store.aggregate_raw(ws, ws + WINDOW_15M_NS, WINDOW_15M_NS)

        def read() -> None:
            store.read_points(ws, ws + WINDOW_15M_NS, site_id="site-1")

        def sizes() -> str:
            rows = conn.execute(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relname LIKE 'raw_2%%' AND c.relkind = 'i' ORDER BY 1"
            ).fetchall()
            return ", ".join(f"{r}={s / 1024:,.0f} kB" for r, s in rows)

        print(f"indexes: {sizes()}")
        brin = (_timed(agg), _timed(read))
        if explain:
            plan = conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM raw WHERE time >= %s "
                "AND time < %s",
                (ws, ws + WINDOW_15M_NS),
            ).fetchall()
            print("\n".join(r[0] for r in plan))
        conn.execute("DROP INDEX raw_time_brin")
        none = (_timed(agg), _timed(read))
        conn.execute("CREATE INDEX raw_time_btree ON raw (time)")
        conn.execute("ANALYZE raw")
        print(f"indexes: {sizes()}")
        btree = (_timed(agg), _timed(read))
        for label, (a, r) in (("BRIN", brin), ("no index", none), ("btree", btree)):
            print(f"15-minute window, {label:>8}: aggregate_raw {a * 1000:7.1f} ms, "
                  f"read_points one site {r * 1000:7.1f} ms")  # fmt: skip
        print(f"aggregate_raw: no index / BRIN = {none[0] / brin[0]:.1f}x, "
              f"btree / BRIN = {btree[0] / brin[0]:.2f}x")  # fmt: skip
        store.close()
        conn.close()


if __name__ == "__main__":
    main()
