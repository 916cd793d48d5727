"""What silences and maintenance windows cost ingest: 10 silences + 5 windows vs none.

    .venv/bin/python bench/bench_mutes.py [--rounds 6] [--batches 60] [--rules 20]

Per batch the daemon stores 5,000 points (SQLite ``write_points``) and then runs the
threshold fast path (``ThresholdEngine.apply``); that pair is "ingest" here. Mutes are
consulted only when a transition creates a notification (``lifecycle`` -> ``mutes``), so a
batch that changes no alert state should cost the same with or without them, and a batch
with transitions pays one indexed read of the active silences per transition plus the
windows' local-time checks.

Three variants: none; "idle" (10 silences and 5 windows that match none of the alerts:
the decision alone); "matching" (the same, matching about 60 % of the alerts: the decision
plus recording why each muted notification was suppressed). Two scenarios per variant (the batches of ``bench_alerts.py``): the steady state (nothing
breaches) and 1 % of the readings breaching and recovering (about 25 transitions per
batch, each one muted or not). The variants alternate within one run (ABC CBA ... over
``--rounds`` rounds, a fresh database each time); each round's figure is the median batch
time, and the result is the median over rounds and the ratio with / without.

Times are this process's CPU time (``time.process_time``), not wall-clock: on a shared
2-core machine the wall-clock medians moved by 25 % between identical variants, the CPU
time by a few percent.

Prints figures; nothing is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_alerts import T0, batches, rules  # noqa: E402

from telemetry_core.alerts.db import open_alerts_db  # noqa: E402
from telemetry_core.alerts.engine import ThresholdEngine  # noqa: E402
from telemetry_core.alerts.mutes import add_silence  # noqa: E402
from telemetry_core.config import parse_config  # noqa: E402
from telemetry_core.store.sqlite import SqliteStore  # noqa: E402

NS = 1_000_000_000
H = 3600 * NS

SITE_ZONES = {
    "site-a": "Europe/Berlin", "site-b": "America/New_York", "site-c": "Asia/Tokyo",
    "site-d": "Australia/Sydney", "site-e": "UTC",
}  # fmt: skip
MAINTENANCE = [
    {"name": "a-sunday", "match": {"site_id": "site-a"}, "days": ["sun"], "start": "02:00",
     "end": "06:00"},
    {"name": "b-nightly", "match": {"site_id": "site-b", "device_id": "meter-1*"},
     "start": "23:00", "end": "01:00"},
    {"name": "c-weekdays", "match": {"site_id": "site-c"}, "days": ["mon", "tue"],
     "start": "09:00", "end": "09:30"},
    {"name": "d-swap", "match": {"site_id": "site-d", "device_id": "meter-7"},
     "from": "2026-12-24T08:00:00Z", "until": "2026-12-24T12:00:00Z"},
    {"name": "all-power", "match": {"rule": "r1*"}, "days": ["sat"], "start": "00:00",
     "end": "00:30"},
]  # fmt: skip
SILENCES = [
    {"site_id": "site-a", "device_id": "meter-3"}, {"site_id": "site-b"},
    {"device_id": "meter-2*"}, {"rule": "r5"}, {"rule": "global", "site_id": "site-e"},
    {"severity": "info"}, {"measurement": "hvac"}, {"site_id": "site-c", "device_id": "meter-39"},
    {"field": "energy_kwh"}, {"kind": "zscore"},
]  # fmt: skip


def idle(matchers: dict[str, str]) -> dict[str, str]:
    """The same matcher set made to miss every alert of the bench (all must hold)."""
    return {**matchers, "measurement": "hvac"}


def config(muted: str):
    sites = {s: {"timezone": z} for s, z in SITE_ZONES.items()}
    data: dict = {"sites": sites, "thresholds": rules(20),
                  "alerts": {"cooldown_seconds": 0, "files": [{"name": "log", "path": "/dev/null"}]}}  # fmt: skip
    if muted == "idle":
        data["maintenance"] = [{**w, "match": idle(w["match"])} for w in MAINTENANCE]
    elif muted == "matching":
        data["maintenance"] = MAINTENANCE
    return parse_config(data)


def one_round(muted: str, steady, breaching) -> tuple[float, float, int]:
    """Median ingest seconds per batch (steady, breaching) and the suppressed count."""
    with tempfile.TemporaryDirectory(prefix="bench-mutes-") as tmp:
        path = str(Path(tmp) / "telemetry.db")
        store = SqliteStore(path)
        db = open_alerts_db(path)
        if muted != "none":
            for m in SILENCES if muted == "matching" else map(idle, SILENCES):
                add_silence(db, m, starts_at=T0 - H, ends_at=T0 + 1000 * H, comment="bench",
                            created_by="bench", now_ns=T0 - H)  # fmt: skip
        engine = ThresholdEngine(config(muted), db)
        engine.apply(steady[0], None, T0)  # a running daemon's warm cache

        def ingest(batch, now):
            store.write_points(batch)
            return engine.apply(batch, None, now)

        out = []
        for scenario in (steady[1:], breaching):
            times = []
            for i, batch in enumerate(scenario):
                t0 = time.process_time()
                ingest(batch, T0 + i * NS)
                times.append(time.process_time() - t0)
            out.append(statistics.median(times))
        with db.read() as conn:
            (suppressed,) = conn.execute(
                "SELECT count(*) FROM alert_outbox WHERE status = 'suppressed'"
            ).fetchone()
        store.close()
        db.close()
    return out[0], out[1], suppressed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batches", type=int, default=60)
    args = ap.parse_args()
    steady = batches(args.batches + 1, 0.0)
    breaching = batches(args.batches, 0.01, seed=11)
    variants = ("none", "idle", "matching")
    figures: dict[str, list[tuple[float, float, int]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for muted in variants if r % 2 == 0 else variants[::-1]:  # alternating order
            figures[muted].append(one_round(muted, steady, breaching))
    print(f"{args.rounds} rounds x {args.batches} batches of 5,000 points, 20 threshold rules;")
    print("idle: 10 silences + 5 windows matching no alert; matching: about 60 % of alerts muted")
    for i, name in enumerate(("steady state (no transition)", "1 % breaching (transitions)")):
        base = statistics.median(f[i] for f in figures["none"])
        line = f"{name:<30} none {base * 1e3:7.3f} ms"
        for v in variants[1:]:
            med = statistics.median(f[i] for f in figures[v])
            line += f"  {v} {med * 1e3:7.3f} ms ({med / base:.3f}x)"
        print(line)
    print("suppressed outbox entries per round: "
          + ", ".join(f"{v} {figures[v][0][2]}" for v in variants))  # fmt: skip


if __name__ == "__main__":
    main()
