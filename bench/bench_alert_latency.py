"""Alert benchmark: one run on a fresh nats-server, figures and ratios printed.

    .venv/bin/python bench/bench_alert_latency.py [--runs 3] [--persisted 100] [--webhooks 20]

Measures, on the same machine in the same run:
  1. ingest throughput of the real daemon process with 20 threshold rules vs none
     (alternating off/on runs on the same pre-published stream, 1 reading per message;
     two of the rules trip on ~0.2% of readings, the rest never);
  2. publish -> breach persisted: with the ingest daemon, ``dagster dev`` and a simulated
     fleet publishing in the background, a breaching (then an in-bounds) reading is
     published and the alerts database is polled from another process every 5 ms until
     the alert event is visible (goal p95 <= 1 s);
  3. publish -> webhook received: the same stack, one breach at a time on a new device,
     until a loopback receiver gets the signed ``alert.firing`` through alert_sensor and
     alert_job (goal p95 <= 15 s). Signatures are verified with ``standardwebhooks``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import pct, prepublish  # noqa: E402

from telemetry_cli.dagster_graphql import wait_ready  # noqa: E402
from telemetry_cli.demo.dagster_dev import start_dagster, stop_dagster  # noqa: E402
from telemetry_cli.ports import free_port  # noqa: E402
from telemetry_cli.services import start_nats, stop_process  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BENCH_SITE = "bench"

# 20 rules over the publisher's fields (power_w = i % 5000 + 0.5, energy_kwh < 1): two
# trip on ~0.2% of readings (values 4990.5-4999.5), eighteen never do.
RULES_20 = "\n".join(
    [
        '[[thresholds]]\nname = "power-spike"\nmeasurement = "energy"\nfield = "power_w"\n'
        'above = 4990.0\nseverity = "critical"\n',
        '[[thresholds]]\nname = "power-spike-site-0"\nmeasurement = "energy"\nfield = "power_w"\n'
        'above = 4990.0\nsite_id = "site-0"\nseverity = "warning"\n',
    ]
    + [
        f'[[thresholds]]\nname = "power-{i}"\nmeasurement = "energy"\nfield = "power_w"\n'
        f'above = {1e6 + i}\nbelow = -{i + 1}.0\nsite_id = "site-{i % 5}"\n'
        for i in range(9)
    ]
    + [
        f'[[thresholds]]\nname = "kwh-{i}"\nmeasurement = "energy"\nfield = "energy_kwh"\n'
        f'above = {100 + i}.0\ndevice_id = "meter-{i}"\n'
        for i in range(9)
    ]
)

STACK_CONFIG = f"""
[[thresholds]]
name = "bench-power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
site_id = "{BENCH_SITE}"
severity = "critical"

[alerts]
cooldown_seconds = 0

[[alerts.webhooks]]
name = "bench"
url = "{{url}}"
secret_env = "BENCH_WEBHOOK_SECRET"
"""


# -- 1. throughput on vs off ---------------------------------------------------------------
def daemon_rate(url: str, n_msgs: int, work: Path, config: Path | None) -> tuple[float, float]:
    """Readings/s of a ``python -m ingest_daemon`` process from its first commit to its
    last (start-up excluded), as bench_ingest measures it, and the process's CPU time per
    reading over the same span (µs): the wall-clock rate moves with whatever else the
    machine runs, CPU time per reading much less."""
    prepublish(url, n_msgs, 1)
    port = free_port()
    env = {
        **os.environ,
        "TELEMETRY_NATS_URL": url,
        "TELEMETRY_STORE_URL": f"sqlite:///{work / f'tp-{time.monotonic_ns()}.db'}",
        "TELEMETRY_HTTP_PORT": str(port),
        "TELEMETRY_LOG_LEVEL": "WARNING",
    }
    env.pop("TELEMETRY_CONFIG", None)
    env.pop("TELEMETRY_ALERTS_DB", None)
    if config is not None:
        env["TELEMETRY_CONFIG"] = str(config)
    proc = subprocess.Popen([sys.executable, "-m", "ingest_daemon"], env=env, cwd=ROOT)
    try:
        first: tuple[float, float, float] | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            stored = _metric(port, "telemetry_ingest_readings_stored_total")
            if stored is not None:
                if first is None and stored > 0:
                    first = (time.perf_counter(), stored, _cpu_seconds(proc.pid))
                if stored >= n_msgs and first is not None:
                    n = n_msgs - first[1]
                    cpu = _cpu_seconds(proc.pid) - first[2]
                    return n / (time.perf_counter() - first[0]), cpu / n * 1e6
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("the daemon did not finish within 600 s")
    finally:
        stop_process(proc)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# -- the stack for 2 and 3 -----------------------------------------------------------------
class Receiver:
    """Loopback webhook receiver: verifies each delivery, records its arrival time."""

    def __init__(self) -> None:
        from standardwebhooks import Webhook, WebhookVerificationError

        verifier = Webhook(SECRET)
        self.arrivals: list[tuple[int, dict]] = []  # (arrival ns, payload)
        self.bad = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time_ns()
                try:
                    outer.arrivals.append((at, verifier.verify(body, dict(self.headers))))
                except WebhookVerificationError:  # counted and reported, not fatal
                    outer.bad += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, device: str, kind: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, payload in list(self.arrivals):
                if payload["type"] == kind and payload["data"]["device_id"] == device:
                    return at
            time.sleep(0.01)
        raise RuntimeError(f"no {kind} for {device} within {timeout:.0f} s")


async def _publish(url: str, device: str, value: float) -> int:
    """Publish one reading, acknowledged by JetStream; the time just before publishing."""
    import nats

    nc = await nats.connect(url)
    try:
        t = time.time_ns()
        payload = json.dumps({"timestamp": t, "power_w": value}).encode()
        await nc.jetstream().publish(f"iot.energy.{BENCH_SITE}.{device}", payload)
        return t
    finally:
        await nc.close()


def wait_event(conn: sqlite3.Connection, after: int, device: str, kind: str, timeout: float):
    """Poll the alerts database every 5 ms for ``kind`` of ``device``: (seen ns, rowid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = conn.execute(
            "SELECT rowid, body FROM alert_events WHERE rowid > ? ORDER BY rowid", (after,)
        ).fetchall()
        for rowid, body in rows:
            data = json.loads(body)
            if data["type"] == f"alert.{kind}" and data["data"]["device_id"] == device:
                return time.time_ns(), rowid
        time.sleep(0.005)
    raise RuntimeError(f"no {kind} event for {device} within {timeout:.0f} s")


def persisted_latencies(url: str, db_path: str, samples: int) -> list[float]:
    conn = sqlite3.connect(db_path, timeout=10)
    conn.execute("PRAGMA query_only = 1")
    after = conn.execute("SELECT coalesce(max(rowid), 0) FROM alert_events").fetchone()[0]
    out = []
    for i in range(samples):
        device = f"persist-{i}"
        for kind, value in (("firing", 9000.0), ("resolved", 100.0)):
            t = asyncio.run(_publish(url, device, value))
            seen, after = wait_event(conn, after, device, kind, 30)
            out.append((seen - t) / 1e6)
            time.sleep(random.uniform(0, 0.2))
    conn.close()
    return out


def webhook_latencies(url: str, receiver: Receiver, samples: int) -> list[float]:
    out = []
    for i in range(samples):
        device = f"hook-{i}"
        t = asyncio.run(_publish(url, device, 9000.0))
        out.append((receiver.wait_for(device, "alert.firing", 180) - t) / 1e9)
        print(f"  webhook sample {i + 1}/{samples}: {out[-1]:.1f} s", flush=True)
        time.sleep(random.uniform(0, 5))  # independent of the sensor's 5 s loop phase
    return out


def stack(url: str, work: Path, args) -> tuple[list[float], list[float], int]:
    receiver = Receiver()
    config = work / "stack.toml"
    config.write_text(STACK_CONFIG.format(url=receiver.url))
    db = work / "stack.db"
    env = {
        "TELEMETRY_STORE_URL": f"sqlite:///{db}",
        "TELEMETRY_CONFIG": str(config),
        "BENCH_WEBHOOK_SECRET": SECRET,
    }
    daemon_env = {
        **os.environ, **env, "TELEMETRY_NATS_URL": url, "TELEMETRY_HTTP_PORT": "-1",
        "TELEMETRY_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    daemon_env.pop("TELEMETRY_ALERTS_DB", None)
    asyncio.run(_reset_consumer(url))
    daemon = subprocess.Popen([sys.executable, "-m", "ingest_daemon"], env=daemon_env, cwd=work)
    port = free_port()
    log = work / "dagster.log"
    dagster = start_dagster(work / "dagster_home", port, env, log_path=log)
    sim = None
    try:
        if not wait_ready(port, 300, proc=dagster):
            raise RuntimeError(f"dagster dev did not start:\n{log.read_text()[-2000:]}")
        sim = subprocess.Popen(
            [sys.executable, "-m", "telemetry_cli", "simulate", "--nats-url", url,
             "--rate", str(args.load), "--sites", "3", "--devices", "20", "--quiet"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(5)  # let the background load and the first sensor ticks settle
        persisted = persisted_latencies(url, str(db), args.persisted)
        hooks = webhook_latencies(url, receiver, args.webhooks)
    finally:
        if sim is not None:
            stop_process(sim)
        stop_dagster(dagster)
        stop_process(daemon)
        receiver.server.shutdown()
    return persisted, hooks, receiver.bad


async def _reset_consumer(url: str) -> None:
    """A fresh stream and consumer for the stack (the throughput runs left theirs)."""
    import contextlib

    import nats

    from ingest_daemon.jetstream import ensure_streams

    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js)
    await js.purge_stream("IOT")
    with contextlib.suppress(Exception):
        await js.delete_consumer("IOT", "telemetry-ingest")
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="throughput runs each, off and on")
    parser.add_argument("--messages", type=int, default=200_000, help="per throughput run")
    parser.add_argument("--persisted", type=int, default=100, help="breach/resolve pairs")
    parser.add_argument("--webhooks", type=int, default=20, help="webhook samples")
    parser.add_argument("--load", type=int, default=500, help="background msg/s in 2 and 3")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        work = Path(tmp)
        rules = work / "rules20.toml"
        rules.write_text(RULES_20)
        port = free_port()
        nats = start_nats(port, work / "js")
        url = f"nats://127.0.0.1:{port}"
        off: list[tuple[float, float]] = []
        on: list[tuple[float, float]] = []
        try:
            if not args.skip_throughput:
                for _ in range(args.runs):  # alternating, so drift hits both alike
                    off.append(daemon_rate(url, args.messages, work, None))
                    on.append(daemon_rate(url, args.messages, work, rules))
                    print(
                        f"  off {off[-1][0]:,.0f}/s {off[-1][1]:.1f} µs CPU/reading, "
                        f"on {on[-1][0]:,.0f}/s {on[-1][1]:.1f} µs CPU/reading",
                        flush=True,
                    )
            persisted, hooks, bad = stack(url, work, args)
        finally:
            stop_process(nats)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if off:
        o, n = statistics.median(r for r, _ in off), statistics.median(r for r, _ in on)
        oc, nc = statistics.median(c for _, c in off), statistics.median(c for _, c in on)
        print(f"ingest, 1 reading/msg (medians of {len(off)} alternating runs each):")
        print(f"  no rules : {o:>9,.0f} readings/s, {oc:5.1f} µs CPU per reading")
        print(
            f"  20 rules : {n:>9,.0f} readings/s, {nc:5.1f} µs CPU per reading -> throughput "
            f"{n / o:.3f}x ({100 * (1 - n / o):+.1f}% slower), CPU {nc / oc:.3f}x "
            f"({100 * (nc / oc - 1):+.1f}%); goal <= 10% slower"
        )
    print(
        f"publish -> breach persisted ({len(persisted)} events, {args.load} msg/s load): "
        f"median {statistics.median(persisted):.0f} ms, p95 {pct(persisted, 0.95):.0f} ms, "
        f"max {max(persisted):.0f} ms (goal p95 <= 1000 ms)"
    )
    print(
        f"publish -> webhook received ({len(hooks)} alerts): median "
        f"{statistics.median(hooks):.1f} s, p95 {pct(hooks, 0.95):.1f} s, max {max(hooks):.1f} s "
        f"(goal p95 <= 15 s); bad signatures: {bad}"
    )


if __name__ == "__main__":
    main()
