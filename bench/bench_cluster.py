"""NATS cluster benchmark: what replication costs, and how long a failover stops ingest.

    .venv/bin/python bench/bench_cluster.py [--runs 3] [--quick]

In the same run, on this machine:
  1. ingest throughput, one nats-server (stream R1) with one daemon, vs a 3-node cluster
     (streams R3) with two daemons on one durable, both writing one SQLite file; single
     readings (2 fields) and 100 readings per message. Messages are published first (with
     PubAcks, the same way for both), then the daemons start; the rate runs from the first
     stored reading to the last. Setups alternate within each run, so other load on the
     machine hits both sides of a ratio alike.
  2. failover gap: the cluster with two daemons, a publisher at a steady rate retrying each
     message (same Nats-Msg-Id) until its PubAck; the stream's and consumer's leaders are
     moved to a node holding a daemon connection, which is then SIGKILLed (restarted 10 s
     later). The gap is the longest time between two increases of the readings stored
     (both daemons' /metrics polled every 20 ms) around the kill; the publisher's longest
     wait for a PubAck is printed beside it. Every published reading must end up stored.
Medians over --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daemon.conftest import DaemonProc  # noqa: E402
from tests.harness.nats_cluster import LocalCluster  # noqa: E402

DEVICES = 200


def payload(i: int, per_msg: int, base: int) -> bytes:
    if per_msg == 1:
        return b'{"timestamp":%d,"power_w":%d.5,"energy_kwh":0.%03d}' % (
            base + i * 1000, i % 5000, i % 997,
        )  # fmt: skip
    return json.dumps(
        [
            {"timestamp": base + (i * per_msg + k) * 1000, "power_w": k + 0.5, "energy_kwh": k}
            for k in range(per_msg)
        ]
    ).encode()


def subject(i: int) -> str:
    dev = i % DEVICES
    return f"iot.energy.site-{dev % 5}.meter-{dev}"


async def prepublish(urls: list[str], n: int, per_msg: int, replicas: int) -> None:
    """``n`` messages with PubAcks, 2,000 in flight at a time."""
    import nats

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(urls, pending_size=256 * 1024 * 1024)
    js = nc.jetstream()
    await ensure_streams(js, replicas)
    base = time.time_ns() - 600 * 10**9
    futures = []
    for i in range(n):
        futures.append(await js.publish_async(subject(i), payload(i, per_msg, base)))
        if len(futures) >= 2000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    await nc.close()


def stored(d: DaemonProc) -> float:
    try:
        return d.metric("telemetry_ingest_readings_stored_total")
    except OSError:
        return 0.0


def throughput(work: Path, clustered: bool, n_msgs: int, per_msg: int) -> float:
    """Readings/s from the first stored reading to the last, on a fresh server or cluster."""
    root = work / f"{'cluster' if clustered else 'single'}-{time.monotonic_ns()}"
    nats_servers = LocalCluster(root, 3 if clustered else 1).start()
    daemons: list[DaemonProc] = []
    try:
        replicas = 3 if clustered else 1
        asyncio.run(prepublish(nats_servers.urls.split(","), n_msgs, per_msg, replicas))
        env = {"TELEMETRY_STREAM_REPLICAS": str(replicas), "TELEMETRY_LOG_LEVEL": "WARNING"}
        store = f"sqlite:///{root / 'telemetry.db'}"
        daemons = [
            DaemonProc(nats_servers.urls, store, root, **env).launch()
            for _ in range(2 if clustered else 1)
        ]
        total = n_msgs * per_msg
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(stored(d) for d in daemons)
            if first is None and done > 0:
                first = (time.perf_counter(), done)
            if done >= total:
                assert first is not None
                return (total - first[1]) / (time.perf_counter() - first[0])
            time.sleep(0.1)
        raise RuntimeError(f"not all readings stored: {[d.log() for d in daemons]}")
    finally:
        for d in daemons:
            d.stop(30)
        nats_servers.stop()


async def _leaders(urls: list[str]) -> tuple[str, str] | None:
    from tests.cluster.conftest import leaders

    return await leaders(urls)


def failover(work: Path, rate: float, per_msg: int, seconds: float) -> dict[str, float]:
    """One kill of the leaders' node mid-stream: the longest pause in stored readings."""
    from tests.cluster.conftest import move_leaders

    root = work / f"failover-{time.monotonic_ns()}"
    cluster = LocalCluster(root, 3).start()
    urls = cluster.urls.split(",")
    env = {"TELEMETRY_STREAM_REPLICAS": "3", "TELEMETRY_LOG_LEVEL": "WARNING"}
    store = f"sqlite:///{root / 'telemetry.db'}"
    daemons = [DaemonProc(cluster.urls, store, root, **env).launch() for _ in range(2)]
    try:
        for d in daemons:
            d.wait_healthy()
        deadline = time.monotonic() + 60
        while not all(d.health()["consumer"]["lag"] is not None for d in daemons):
            if time.monotonic() > deadline:
                raise RuntimeError("daemons not consuming")
            time.sleep(0.1)
        conns = cluster.clients_named("telemetry-ingest")
        victim = max(conns, key=lambda n: conns[n])
        move_leaders(urls, victim)
        result = asyncio.run(_failover_run(cluster, daemons, victim, rate, per_msg, seconds))
        return result
    finally:
        for d in daemons:
            d.stop(30)
        cluster.stop()


async def _failover_run(cluster, daemons, victim, rate, per_msg, seconds) -> dict[str, float]:
    import nats
    import nats.errors

    async def quiet(_exc: Exception) -> None:
        """Reconnect attempts to the killed node fail by design."""

    urls = cluster.urls.split(",")
    nc = await nats.connect(
        urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet
    )
    js = nc.jetstream()
    base = time.time_ns() - 600 * 10**9
    n = int(rate * seconds)
    acked_at: list[float] = []
    samples: list[tuple[float, float]] = []
    stop_sampling = asyncio.Event()

    async def publisher() -> None:
        t0 = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            delay = 0.05
            while True:
                try:
                    await js.publish(
                        subject(i), payload(i, per_msg, base), timeout=2,
                        headers={"Nats-Msg-Id": f"f{i}"},
                    )  # fmt: skip
                    break
                except (nats.errors.Error, OSError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            acked_at.append(time.monotonic())

    async def sampler() -> None:
        while not stop_sampling.is_set():
            total = sum(await asyncio.gather(*(asyncio.to_thread(stored, d) for d in daemons)))
            samples.append((time.monotonic(), total))
            await asyncio.sleep(0.02)

    sampling = asyncio.create_task(sampler())
    pub = asyncio.create_task(publisher())
    await asyncio.sleep(seconds * 0.3)
    killed = time.monotonic()
    cluster.kill_node(victim)
    await asyncio.sleep(10)
    await asyncio.to_thread(cluster.start_node, victim)
    await pub
    published = time.monotonic()
    await nc.close()
    want = n * per_msg
    deadline = time.monotonic() + 120  # acks lost with the leader: redelivered after 30 s
    while not await _all_acked(urls) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    stop_sampling.set()
    await sampling
    rows = await asyncio.to_thread(_count_rows, daemons[0].env["TELEMETRY_STORE_URL"])
    if rows != 2 * want:  # two fields a reading
        raise RuntimeError(f"stored {rows / 2:.0f} of {want} readings after the failover")
    changes = [t for (_, prev), (t, v) in itertools.pairwise(samples) if v > prev]
    # from just before the kill until publishing ended (later, only redeliveries of acks
    # lost with the leader trickle in, after ack_wait: not a pause in ingest)
    around = [t for t in changes if killed - 2.0 <= t <= published + 1.0]
    gap = max((b - a for a, b in itertools.pairwise(around)), default=0.0)
    acks = [t for t in acked_at if t >= killed - 2.0]
    stall = max((b - a for a, b in itertools.pairwise(acks)), default=0.0)
    first_after = next((t for t in changes if t > killed), killed)
    return {"gap": gap, "pub_stall": stall, "resume": first_after - killed}


async def _all_acked(urls: list[str]) -> bool:
    import nats
    import nats.errors

    nc = await nats.connect(urls)
    try:
        info = await nc.jetstream().consumer_info("IOT", "telemetry-ingest", timeout=2)
        return info.num_pending == 0 and info.num_ack_pending == 0
    except nats.errors.Error:
        return False
    finally:
        await nc.close()


def _count_rows(store_url: str) -> int:
    from telemetry_core.store import open_store

    store = open_store(store_url)
    try:
        return len(store.read_points(0, 2**62).rows())
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller volumes")
    args = parser.parse_args()
    single_n = 20_000 if args.quick else 60_000
    batched_n = 500 if args.quick else 2_000
    results: dict[tuple[str, int], list[float]] = {}
    fails: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        for _ in range(args.runs):
            for per_msg, n in ((1, single_n), (100, batched_n)):
                for setup in ("single", "cluster"):
                    rate = throughput(work, setup == "cluster", n, per_msg)
                    results.setdefault((setup, per_msg), []).append(rate)
            fails.append(failover(work, rate=200, per_msg=10, seconds=20))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} cores, runs={args.runs} (medians), load average at the end {load}"
    )
    print("command: .venv/bin/python bench/bench_cluster.py" + (" --quick" if args.quick else ""))
    for per_msg in (1, 100):
        one = statistics.median(results[("single", per_msg)])
        three = statistics.median(results[("cluster", per_msg)])
        what = "1 reading/msg   " if per_msg == 1 else "100 readings/msg"
        print(
            f"{what}: 1 server R1 + 1 daemon {one:>9,.0f} readings/s | 3 nodes R3 + 2 daemons "
            f"{three:>9,.0f} readings/s | ratio {three / one:.2f}"
        )
    gaps = ", ".join(f"{f['gap']:.1f}/{f['pub_stall']:.1f}" for f in fails)
    gap = statistics.median(f["gap"] for f in fails)
    stall = statistics.median(f["pub_stall"] for f in fails)
    resume = statistics.median(f["resume"] for f in fails)
    print(
        f"failover (leaders' node SIGKILLed, 200 msg/s x 10 readings): longest gap between stored "
        f"readings {gap:.1f} s (runs, gap/PubAck wait: {gaps}); first "
        f"store after the kill {resume:.1f} s; publisher's longest PubAck wait {stall:.1f} s"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
