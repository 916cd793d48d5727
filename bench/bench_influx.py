"""InfluxDB store benchmark: ingest, line-protocol encoding and one 15-minute rollup.

    .venv/bin/python bench/bench_influx.py            # full run (~2-3 minutes on 2 cores)
    .venv/bin/python bench/bench_influx.py --quick    # smaller sizes, a smoke test

In one run, against a throwaway ``influxd`` it starts on free loopback ports (or
``--url influxdb://host:port/db`` for an existing server, which must not hold data you
care about in that database):

1. Ingest: ``write_points`` with daemon-sized batches of point tuples into SQLite and
   into InfluxDB (the one writer of its database, as under the daemon's lease), next to
   a *bare client* that POSTs the same batches as prepared line protocol to the same
   server (keep-alive ``http.client``, no encoding, no stream-order read, no late-window
   bookkeeping). Goal: ours >= 80% of bare. Runs are interleaved (ours, bare, bare + seq,
   ours, ...) so that load from other processes hits each alike.
2. Encoding: our tuple encoder and polars frame encoder vs ``influxdb_client.Point``.
3. Rollup: one 15-minute window holding 4.5 M raw values, ``aggregate_raw`` on each
   backend (InfluxDB computes it server-side with InfluxQL).

Ingest passes the daemon's sequences; "bare + seq" posts the same prepared lines with the
``seq`` field our store writes too (what the server itself pays for stream order).

Figures are medians of ``--runs`` runs where a run is cheap. Why this is a script and
not a timed test: timings on a shared 2-core machine are evidence, not pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telemetry_core.lineprotocol import encode_frame, encode_points
from telemetry_core.store import open_store
from telemetry_core.windows import WINDOW_15M_NS
from tests.harness.influxd import start_influxd

T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % WINDOW_15M_NS


def points(n: int, *, start: int = T0, series: int = 500, step_ns: int = 1_000_000) -> list:
    """Daemon-like points: 2 fields per reading, many devices, ns-resolution times."""
    rng = random.Random(1)
    out = []
    for i in range(n // 2):
        device = i % (series // 2)
        t = start + i * step_ns
        site = f"site-{device % 5}"
        out.append(("energy", site, f"meter-{device}", "power_w", t, rng.uniform(0, 5000)))
        out.append(("energy", site, f"meter-{device}", "energy_kwh", t, rng.uniform(0, 2)))
    return out


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


CPU: dict[str, list[float]] = {}  # client CPU seconds per timed call, by label


def timed(fn: Callable[[], object], label: str = "") -> float:
    """Wall seconds of ``fn``; with a label, also this process's CPU seconds (every
    thread), the client's own cost whatever else loads the machine."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t
    if label:
        CPU.setdefault(label, []).append(time.process_time() - c)
    return wall


def median_rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def fmt(rate: float) -> str:
    return f"{rate:>12,.0f}/s"


class Bare:
    """The baseline: prepared line protocol POSTed over one keep-alive connection."""

    def __init__(self, host: str, port: int, db: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.path = f"/write?db={db}&precision=ns"
        self.conn.request("POST", f"/query?q=CREATE+DATABASE+%22{db}%22")
        self.conn.getresponse().read()

    def write(self, body: bytes) -> None:
        self.conn.request("POST", self.path, body=body)
        resp = self.conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"bare write failed: {resp.status}")


def daemon_seqs(chunk_start: int, n: int) -> list[int]:
    """The daemon's seqs: one message per reading of 2 points, stream order."""
    return [1 + (chunk_start + i) // 2 for i in range(n)]


def bench_ingest(args, host: str, port: int, tmp: Path) -> dict[str, float]:
    data = points(args.points)
    chunks = list(batches(data, args.batch))
    seqs = [daemon_seqs(i * args.batch, len(c)) for i, c in enumerate(chunks)]
    prepared = [encode_points(c).encode() for c in chunks]
    with_seq = [encode_points(c, seqs=q).encode() for c, q in zip(chunks, seqs, strict=True)]
    names = ("sqlite", "influxdb", "bare", "bare_seq")
    results: dict[str, list[float]] = {k: [] for k in names}
    for run in range(args.runs):
        if not args.no_sqlite:
            sqlite = open_store(f"sqlite:///{tmp / f'ingest-{run}.db'}")
            results["sqlite"].append(timed(lambda s=sqlite: write_all(s, chunks, seqs)))
            sqlite.close()
        influx = open_store(f"influxdb://{host}:{port}/bench_ours_{run}")
        influx.ping()  # set-up (CREATE DATABASE) outside the timing
        results["influxdb"].append(timed(lambda s=influx: write_all(s, chunks, seqs), "influxdb"))
        influx.close()
        bare = Bare(host, port, f"bench_bare_{run}")
        results["bare"].append(timed(lambda b=bare: [b.write(x) for x in prepared], "bare"))
        bare_seq = Bare(host, port, f"bench_bareseq_{run}")
        results["bare_seq"].append(
            timed(lambda b=bare_seq: [b.write(x) for x in with_seq], "bare_seq")
        )
    rates = {k: median_rate(len(data), v) for k, v in results.items() if v}
    print(f"\n== ingest: {len(data):,} points ({len(data) // 2:,} readings of 2 fields), "
          f"batches of {args.batch:,} points with the daemon's seqs, median of {args.runs} runs")  # fmt: skip
    labels = {
        "sqlite": "sqlite write_points",
        "influxdb": "influxdb write_points",
        "bare": "bare client, prepared LP",
        "bare_seq": "  same LP + seq field",
    }
    for name, label in labels.items():
        if name in rates:
            print(f"  {label:<28}{fmt(rates[name])} points   {fmt(rates[name] / 2)} readings")
    cpu = {k: statistics.median(v) * 1e6 / len(data) for k, v in CPU.items()}
    print(f"  client CPU per point: influxdb {cpu['influxdb']:.2f} us, bare {cpu['bare']:.2f} us, "
          f"bare + seq {cpu['bare_seq']:.2f} us (all threads of this process)")  # fmt: skip
    ratio = rates["influxdb"] / rates["bare"]
    print(f"  influxdb:// vs bare client: {ratio:.0%} (goal >= 80%); "
          f"vs bare client + seq: {rates['influxdb'] / rates['bare_seq']:.0%}")  # fmt: skip
    return {**rates, "ratio": ratio}


def write_all(store, chunks: list[list], seqs: list[list[int]]) -> None:
    for chunk, q in zip(chunks, seqs, strict=True):
        store.write_points(chunk, seqs=q)


def bench_encoding(args) -> dict[str, float]:
    import polars as pl
    from influxdb_client import Point

    data = points(args.encode_points)
    n = len(data)
    cold = [timed(lambda: encode_points(data)) for _ in range(args.runs)]
    cache: dict = {}
    encode_points(data, cache=cache)  # the store keeps its series prefixes between batches
    warm = [timed(lambda: encode_points(data, cache=cache)) for _ in range(args.runs)]
    frame = pl.DataFrame(data, schema=["measurement", "site_id", "device_id", "field", "time",
                                       "value"], orient="row")  # fmt: skip

    def frame_lp() -> str:
        return encode_frame(
            frame, "raw", tags=["measurement", "site_id", "device_id", "field"],
            fields={"value": "float"}, time="time",
        )  # fmt: skip

    polars_times = [timed(frame_lp) for _ in range(args.runs)]

    def with_points() -> list[str]:
        return [
            Point("raw").tag("measurement", m).tag("site_id", s).tag("device_id", d)
            .tag("field", f).field("value", v).time(t).to_line_protocol()
            for m, s, d, f, t, v in data
        ]  # fmt: skip

    point_times = [timed(with_points) for _ in range(max(1, args.runs // 2))]
    rates = {
        "tuples_cold": median_rate(n, cold),
        "tuples": median_rate(n, warm),
        "polars": median_rate(n, polars_times),
        "point": median_rate(n, point_times),
    }
    print(f"\n== line-protocol encoding: {n:,} points, median")
    print(f"  encode_points, warm cache   {fmt(rates['tuples'])}  "
          f"{rates['tuples'] / rates['point']:.1f}x Point")  # fmt: skip
    print(f"  encode_points, cold cache   {fmt(rates['tuples_cold'])}  "
          f"{rates['tuples_cold'] / rates['point']:.1f}x Point")  # fmt: skip
    print(f"  encode_frame (polars)       {fmt(rates['polars'])}  "
          f"{rates['polars'] / rates['point']:.1f}x Point")  # fmt: skip
    print(f"  influxdb_client.Point       {fmt(rates['point'])}")
    return rates


def bench_rollup(args, host: str, port: int, tmp: Path) -> dict[str, float]:
    """One window with ``--rollup-values`` raw values: series x one value per step."""
    series = args.rollup_series
    per_series = args.rollup_values // series
    step = WINDOW_15M_NS // per_series
    stores = {
        "sqlite": open_store(f"sqlite:///{tmp / 'rollup.db'}"),
        "influxdb": open_store(f"influxdb://{host}:{port}/bench_rollup"),
    }
    rng = random.Random(2)
    out: dict[str, float] = {}
    print(f"\n== rollup: one 15-minute window, {series * per_series:,} raw values "
          f"({series:,} series x {per_series:,})")  # fmt: skip
    for name, store in stores.items():
        load = 0.0
        for k in range(per_series):
            t = T0 + k * step + 7
            chunk = [("energy", f"site-{s % 10}", f"meter-{s // 2}",
                      ("power_w", "energy_kwh")[s % 2], t, rng.uniform(0, 5000))
                     for s in range(series)]  # fmt: skip
            load += timed(lambda c=chunk, st=store: st.write_points(c))
        times = []
        for _ in range(args.rollup_runs):
            t = time.perf_counter()
            agg = store.aggregate_raw(T0, T0 + WINDOW_15M_NS, WINDOW_15M_NS)
            times.append(time.perf_counter() - t)
        assert agg.height == series and agg["count"].sum() == series * per_series, agg
        out[name] = statistics.median(times)
        print(f"  {name:<10} load {series * per_series / load:>10,.0f} points/s   "
              f"aggregate_raw {out[name]:6.2f} s (median of {len(times)})  "
              f"{series * per_series / out[name]:>12,.0f} values/s")  # fmt: skip
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--url", help="existing influxdb://host:port (databases bench_*)")
    parser.add_argument("--influxd", default=shutil.which("influxd") or "/usr/bin/influxd")
    parser.add_argument("--points", type=int, default=600_000)
    parser.add_argument("--batch", type=int, default=5_000, help="points per write_points")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--encode-points", type=int, default=200_000)
    parser.add_argument("--rollup-values", type=int, default=4_500_000)
    parser.add_argument("--rollup-series", type=int, default=5_000)
    parser.add_argument("--rollup-runs", type=int, default=3)
    parser.add_argument("--no-sqlite", action="store_true", help="ingest: skip SQLite")
    parser.add_argument("--part-points", type=int, help="points per request (store default)")
    parser.add_argument("--only", choices=["encoding", "ingest", "rollup"],
                        help="run one part")  # fmt: skip
    args = parser.parse_args()
    if args.part_points:
        from telemetry_core.store.influx import store as influx_store

        influx_store._PART_POINTS = args.part_points
    if args.quick:
        args.points, args.encode_points, args.rollup_values = 60_000, 20_000, 300_000
        args.rollup_series, args.rollup_runs = 1_000, 1
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmpdir:
        tmp = Path(tmpdir)
        proc = None
        if args.url:
            parts = urlsplit(args.url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 8086
        else:
            proc, port = start_influxd(args.influxd, tmp)
            host = "127.0.0.1"
        try:
            print(f"python {sys.version.split()[0]}, influxdb at {host}:{port}")
            parts = {
                "encoding": lambda: bench_encoding(args),
                "ingest": lambda: bench_ingest(args, host, port, tmp),
                "rollup": lambda: bench_rollup(args, host, port, tmp),
            }
            for name, run in parts.items():
                if args.only in (None, name):
                    run()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
