"""Threshold fast-path micro-benchmark: ThresholdEngine.apply on 5,000-point batches.

    .venv/bin/python bench/bench_alerts.py [--batches 200] [--rules 20] [--alerts-db URL]

The daemon calls ``apply`` after each store commit, so its cost is compared with the
SQLite store's ``write_points`` of the same batch (the commit it follows). Batches look like
the simulated fleet: 5 sites x 40 devices, readings with ``power_w`` and ``energy_kwh``
(2 fields), one reading per device every ~2 s, so a 5,000-point batch holds 2,500 readings.
Rules: ``--rules`` thresholds on energy.power_w (scoped to sites, devices, or global),
as an operator would write them.

Scenarios, each timed per batch (median and p95 of ``--batches`` batches):

1. no rule matches the batch (the rules name another measurement)
2. every power_w point is looked at, nothing changes state (steady state)
3. as 2, with 1 % of the readings breaching and recovering (transitions and events)
4. the store's write_points of the same batch, for the ratio

``--alerts-db postgresql://...`` puts the alerts in that (empty, throwaway) PostgreSQL
database instead of the store's file, to see what the round trips cost.

Prints figures; nothing is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from telemetry_core.alerts.db import open_alerts_db  # noqa: E402
from telemetry_core.alerts.engine import ThresholdEngine  # noqa: E402
from telemetry_core.config import parse_config  # noqa: E402
from telemetry_core.store.sqlite import SqliteStore  # noqa: E402

NS = 1_000_000_000
T0 = 1_790_000_000 * NS
SITES = [f"site-{c}" for c in "abcde"]
DEVICES = [f"meter-{i}" for i in range(40)]
BATCH = 5000


def rules(n: int, measurement: str = "energy") -> list[dict]:
    out = [{"measurement": measurement, "field": "power_w", "above": 5000.0, "name": "global",
            "severity": "critical"}]  # fmt: skip
    for i in range(1, n):
        scope = (
            {"site_id": SITES[i % len(SITES)]}
            if i % 2
            else {"site_id": SITES[i % len(SITES)], "device_id": DEVICES[i % len(DEVICES)]}
        )
        out.append({"measurement": measurement, "field": "power_w", "above": 4000.0 + i,
                    "below": 1.0, "for_seconds": 30, "name": f"r{i}", **scope})  # fmt: skip
    return out


def batches(count: int, breach_share: float, seed: int = 7) -> list[list[tuple]]:
    rng = random.Random(seed)
    out, t = [], T0
    for _ in range(count):
        points = []
        while len(points) < BATCH:
            for site in SITES:
                for device in DEVICES:
                    t += NS // 100
                    power = 9000.0 if rng.random() < breach_share else 400 + rng.random() * 100
                    points.append(("energy", site, device, "power_w", t, power))
                    points.append(("energy", site, device, "energy_kwh", t, 0.1))
        out.append(points[:BATCH])
    return out


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t0)
    return out


def show(name: str, seconds: list[float], reference: float | None = None) -> float:
    med = statistics.median(seconds)
    p95 = sorted(seconds)[int(0.95 * (len(seconds) - 1))]
    ratio = f"  {100 * med / reference:5.1f} % of write_points" if reference else ""
    print(f"{name:<48} median {med * 1e3:7.3f} ms  p95 {p95 * 1e3:7.3f} ms{ratio}")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--rules", type=int, default=20)
    ap.add_argument("--alerts-db", help="alerts database URL (default: the store's file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        path = str(Path(tmp) / "telemetry.db")
        store = SqliteStore(path)
        db = open_alerts_db(args.alerts_db or path)  # default: the store's file
        steady = batches(args.batches, 0.0)
        breaching = batches(args.batches, 0.01, seed=11)
        print(f"{args.rules} rules, {BATCH}-point batches, {args.batches} batches per scenario")
        write = show("store.write_points (reference)", timed(store.write_points, steady))
        other = ThresholdEngine(parse_config({"thresholds": rules(args.rules, "hvac")}), db)
        show("apply: no rule matches", timed(lambda b: other.apply(b, None, T0), steady), write)
        engine = ThresholdEngine(parse_config({"thresholds": rules(args.rules)}), db)
        engine.apply(steady[0], None, T0)  # warm the cache, as a running daemon has
        show(
            "apply: all power_w matched, no state change",
            timed(lambda b: engine.apply(b, None, T0), steady[1:]),
            write,
        )
        before = engine.apply([], None, T0)
        results = []
        show(
            "apply: 1 % breaching (transitions, events)",
            timed(lambda b: results.append(engine.apply(b, None, T0)), breaching),
            write,
        )
        del before
        fired = sum(r.fired for r in results)
        print(f"  (fired {fired}, resolved {sum(r.resolved for r in results)}, "
              f"{fired / len(results):.1f} alerts per batch)")  # fmt: skip
        store.close()
        db.close()


if __name__ == "__main__":
    main()
