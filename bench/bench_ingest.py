"""Ingest benchmark: one run on a fresh nats-server, figures and ratios printed.

    ./run bench            (or: .venv/bin/python bench/bench_ingest.py [--runs 3] [--quick])

Measures, on the same machine in the same run:
  1. the raw nats-py ceiling for our consumption pattern (pull requests by hand, callback,
     ack each message; no decoding, no store) -- the baseline;
  2. daemon throughput into SQLite, single-reading messages (2 fields each);
  3. daemon throughput into SQLite, 100 readings per message;
  4. stream-arrival -> store-commit latency p50/p99 at a steady 5,000 msg/s;
  5. peak RSS of the daemon process.
Messages are pre-published by a separate process (core publish, then verified in the
stream), so the daemon does not compete with the publisher for CPU in 1-3.

Besides wall-clock rates, the event-loop (main) thread's CPU time per message is printed
for the baseline and the single-reading daemon runs: on a shared machine the wall-clock
ratio moves by +-20% with other load, the CPU cost per message much less, and the event
loop is what limits single-reading ingest. The load average is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telemetry_cli.ports import free_port  # noqa: E402
from telemetry_cli.services import start_nats, stop_process  # noqa: E402

PUBLISHER = r"""
import asyncio, json, sys, time, nats
url, n, per_msg, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 200
async def main():
    nc = await nats.connect(url, pending_size=256 * 1024 * 1024)
    base = time.time_ns() - 600 * 10**9
    for i in range(n):
        dev = i % devices
        if per_msg == 1:
            payload = b'{"timestamp":%d,"power_w":%d.5,"energy_kwh":0.%03d}' % (base + i * 1000, i % 5000, i % 997)
        else:
            payload = json.dumps([{"timestamp": base + (i * per_msg + k) * 1000, "power_w": k + 0.5,
                                   "energy_kwh": 0.001 * k} for k in range(per_msg)]).encode()
        await nc.publish(f"iot.energy.site-{dev % 5}.meter-{dev}", payload)
        if i % 5000 == 0:
            await nc.flush()
    await nc.flush()
    await nc.close()
asyncio.run(main())
"""


async def _stream_count(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info("IOT")).state.messages
    finally:
        await nc.close()


async def _reset(url: str) -> None:
    """Empty the stream and drop the consumer between runs."""
    import nats

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js)
    await js.purge_stream("IOT")
    with contextlib.suppress(Exception):
        await js.delete_consumer("IOT", "telemetry-ingest")
    await nc.close()


def prepublish(url: str, n: int, per_msg: int) -> None:
    asyncio.run(_reset(url))
    subprocess.run([sys.executable, "-c", PUBLISHER, url, str(n), str(per_msg)], check=True)
    deadline = time.monotonic() + 30
    while asyncio.run(_stream_count(url)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("publisher lost messages before the stream (core publish overran)")
        time.sleep(0.1)


CEILING = r"""
import asyncio, json, sys, time, nats
url, n = sys.argv[1], int(sys.argv[2])
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
from ingest_daemon.jetstream import ensure_consumer, PullRequests
async def main():
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_consumer(js, "telemetry-ingest", 40000)
    req = PullRequests("IOT", "telemetry-ingest")
    done = asyncio.Event(); got = 0; inbox = nc.new_inbox(); wake = asyncio.Event()
    async def cb(msg):
        nonlocal got
        if not msg.reply:
            req.ended(); wake.set(); return
        req.delivered(); got += 1
        await msg.ack()
        if req.outstanding < 1000: wake.set()
        if got >= n: done.set()
    await nc.subscribe(inbox, cb=cb, pending_msgs_limit=100000, pending_bytes_limit=-1)
    t0 = time.perf_counter(); c0 = time.thread_time()
    while not done.is_set():
        while req.count < 2:
            await nc.publish(req.subject, req.payload(1000), reply=inbox)
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), 0.25)
        except asyncio.TimeoutError:
            req.expire_stale()
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.thread_time() - c0}))
    await nc.close()
asyncio.run(main())
"""


def ceiling(url: str, n: int) -> tuple[float, float]:
    """Messages/s and event-loop CPU µs per message of the bare consumer."""
    prepublish(url, n, 1)
    out = subprocess.run(
        [sys.executable, "-c", CEILING, url, str(n)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout)
    return n / result["seconds"], result["cpu"] / n * 1e6


def daemon_run(
    url: str, n_msgs: int, per_msg: int, work: Path, store_url: str | None = None
) -> tuple[float, int, float]:
    """Readings/s from the first commit to the last (process start-up excluded), peak RSS
    (kB), and the event-loop thread's CPU µs per message over the same span. The store is
    a fresh SQLite file in ``work`` unless ``store_url`` names another (empty) one."""
    prepublish(url, n_msgs, per_msg)
    db = work / f"bench-{time.monotonic_ns()}.db"
    port = free_port()
    env = {
        **os.environ,
        "TELEMETRY_NATS_URL": url,
        "TELEMETRY_STORE_URL": store_url or f"sqlite:///{db}",
        "TELEMETRY_HTTP_PORT": str(port),
        "TELEMETRY_LOG_LEVEL": "WARNING",
    }
    env.pop("TELEMETRY_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "ingest_daemon"], env=env, cwd=ROOT)
    rss = 0
    try:
        import urllib.request

        readings = n_msgs * per_msg
        first: tuple[float, float, float] | None = None
        while True:
            try:
                text = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    .read()
                    .decode()
                )
                line = next(
                    x
                    for x in text.splitlines()
                    if x.startswith("telemetry_ingest_readings_stored_total ")
                )
                stored = float(line.split()[1])
                if first is None and stored > 0:
                    first = (time.perf_counter(), stored, _thread_cpu_s(proc.pid))
                if stored >= readings:
                    assert first is not None
                    msgs = (readings - first[1]) / per_msg
                    cpu_us = (_thread_cpu_s(proc.pid) - first[2]) / msgs * 1e6
                    rate = (readings - first[1]) / (time.perf_counter() - first[0])
                    return rate, max(rss, _rss_kb(proc.pid, "VmHWM")), cpu_us
            except (OSError, StopIteration):
                pass
            rss = max(rss, _rss_kb(proc.pid))
            time.sleep(0.1)  # polling /metrics costs the daemon CPU: keep it rare
    finally:
        stop_process(proc)


def _thread_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process's main thread, from /proc."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int, key: str = "VmRSS") -> int:
    """Resident set size (``VmRSS``) or its peak so far (``VmHWM``) of a process, in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _latency(url: str, work: Path, rate: int, seconds: float) -> list[float]:
    from ingest_daemon.daemon import Daemon
    from ingest_daemon.settings import Settings

    await _reset(url)
    samples: list[float] = []

    def on_commit(arrived: list[int], commit_ns: int) -> None:
        samples.extend((commit_ns - t) / 1e6 for t in arrived)

    settings = Settings(nats_url=url, store_url=f"sqlite:///{work / 'latency.db'}", http_port=-1)
    daemon = Daemon(settings, on_commit=on_commit)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await asyncio.sleep(1.0)
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telemetry_cli", "simulate", "--nats-url", url, "--rate", str(rate),
        "--duration", str(seconds), "--quiet", "--sites", "5", "--devices", "40", cwd=ROOT,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await sim.wait()
    await asyncio.sleep(1.0)
    stop.set()
    await task
    return samples


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller volumes")
    args = parser.parse_args()
    single_n = 60_000 if args.quick else 200_000
    batched_n = 1_000 if args.quick else 4_000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        port = free_port()
        nats = start_nats(port, work / "js")
        url = f"nats://127.0.0.1:{port}"
        try:
            # Baseline and daemon alternate, so a change in the machine's other load hits
            # both sides of the ratio alike.
            ceil, single = [], []
            for _ in range(args.runs):
                ceil.append(ceiling(url, single_n))
                single.append(daemon_run(url, single_n, 1, work))
            batched = [daemon_run(url, batched_n, 100, work) for _ in range(args.runs)]
            lat = asyncio.run(_latency(url, work, 5000, 10 if args.quick else 20))
        finally:
            stop_process(nats)
    c = statistics.median(r for r, _ in ceil)
    c_cpu = statistics.median(u for _, u in ceil)
    s = statistics.median(r for r, _, _ in single)
    s_cpu = statistics.median(u for _, _, u in single)
    b = statistics.median(r for r, _, _ in batched)
    rss = max(m for _, m, _ in single + batched)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, runs={args.runs} (medians), load average at the end {load}"
    )
    print(
        f"baseline  nats-py pull+callback+ack ceiling : {c:>10,.0f} msg/s  (event loop {c_cpu:.2f} µs CPU a message)"
    )
    print(
        f"daemon    1 reading/msg (2 fields) -> SQLite : {s:>10,.0f} readings/s  ({s / c:.2f}x baseline, goal >= 50,000)"
    )
    print(
        f"          its event loop                     : {s_cpu:>10.2f} µs CPU a message ({c_cpu / s_cpu:.2f}x baseline's speed)"
    )
    print(
        f"daemon    100 readings/msg -> SQLite         : {b:>10,.0f} readings/s  ({b / c:.2f}x baseline, goal >= 200,000)"
    )
    print(
        f"latency   arrival->commit at 5,000 msg/s     : p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms over {len(lat):,} msgs (goal p99 <= 500 ms)"
    )
    print(f"memory    daemon peak RSS                    : {rss / 1024:.0f} MB (goal <= 200 MB)")


if __name__ == "__main__":
    main()
