"""``telemetry demo``: the whole system on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from telemetry_core.store.urls import redact_url

HELP = """Start everything locally: nats-server (JetStream under the state folder, MQTT on
$TELEMETRY_MQTT_PORT, default 1883), the ingest daemon writing to the SQLite store in the
state folder, the device simulator (one energy meter spikes past the power-high threshold
every two minutes), the HTTP query API, a webhook receiver that verifies and prints each
alert, and Dagster (webserver + daemon on a local instance, schedules and sensors on).

At start the last --history-hours of simulated readings go into the store and a Dagster
backfill rolls them up, so the asset graph, partitions, checks and plots show data within
about a minute. Prints a live count of stored readings and each alert until Ctrl-C, then
stops everything cleanly. Logs go to <state>/logs/, alerts also to <state>/alerts.jsonl."""

MQTT_EXAMPLE = (
    "mosquitto_pub -h 127.0.0.1 -p {port} -q 1 -t iot/energy/site-a/meter-mqtt "
    """-m "{{\\"timestamp\\": $(date +%s), \\"power_w\\": 7200}}\""""
)


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
    p.add_argument("--api-port", type=int, default=8080, help="HTTP API port (0: any free port)")
    p.add_argument(
        "--history-hours",
        type=float,
        default=24.0,
        help="hours of simulated history seeded and backfilled at start (default 24; 0: none)",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="store URL (default $TELEMETRY_STORE_URL, else sqlite:///<state>/telemetry.db); "
        "e.g. postgresql://user@host:5432/telemetry: raw points, rollups and alerts then live "
        "in that database",
    )
    p.add_argument("--no-dagster", action="store_true", help="ingest only (no history either)")
    p.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.demo import prepare
    from telemetry_cli.demo.receiver import Receiver
    from telemetry_cli.demo.watch import ChildExited, Console, watch
    from telemetry_cli.errors import CliError
    from telemetry_cli.ports import free_port, wait_port
    from telemetry_cli.services import start_nats

    if args.sites < 1 or args.devices < 1 or args.rate <= 0 or args.history_hours < 0:
        raise CliError("--sites and --devices must be >= 1, --rate > 0, --history-hours >= 0")
    started = time.monotonic()
    state = Path(args.state_dir).resolve()
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = Path(os.environ.get("TELEMETRY_CONFIG") or state / "demo.toml")
    if not config.exists():
        prepare.write_config(config, state, args.history_hours, time.time_ns())
    secret, key = prepare.webhook_secret(dict(os.environ))
    hook_port = prepare.receiver_port(config)  # also: a broken config is one line, now
    mqtt_port, api_port = prepare.mqtt_port(), args.api_port or free_port()
    ports = {
        "MQTT": (mqtt_port, "set TELEMETRY_MQTT_PORT to a free port"),
        "HTTP API": (api_port, "use --api-port, 0 for any free port"),
    }
    if hook_port:
        ports["webhook receiver"] = (hook_port, f"change the {prepare.RECEIVER} url in {config}")
    if not args.no_dagster:
        ports["Dagster UI"] = (args.dagster_port, "use --dagster-port")
    prepare.check_ports(ports)
    nats_port, http_port = free_port(), free_port()
    store_url = (
        args.store or os.environ.get("TELEMETRY_STORE_URL") or f"sqlite:///{state / 'telemetry.db'}"
    )
    prepare.check_store(store_url)
    env = {
        **os.environ,
        "TELEMETRY_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "TELEMETRY_STORE_URL": store_url,
        "TELEMETRY_CONFIG": str(config),
        "TELEMETRY_HTTP_PORT": str(http_port),
        prepare.SECRET_ENV: secret,
    }
    console = Console(started)
    procs: list[tuple[str, subprocess.Popen]] = []
    receiver: Receiver | None = None
    stopping = False
    status = 0

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        with open(logs / "nats.log", "ab") as log:
            procs.append(
                ("nats-server", start_nats(nats_port, state / "nats", log, mqtt_port=mqtt_port))
            )
        dagster = None if args.no_dagster else _start_dagster(state, args.dagster_port, env, logs)
        if dagster is not None:
            procs.append(("dagster", dagster))
        if hook_port:
            receiver = Receiver(key, hook_port, console.event).start()
        procs.append(
            (
                "ingest daemon",
                _spawn([sys.executable, "-m", "ingest_daemon"], env, logs / "ingest.log"),
            )
        )
        history, seeded = None, ""
        if dagster is not None and args.history_hours > 0:
            t0 = time.monotonic()
            points, h_start, h_end = prepare.seed_history(
                store_url, args.sites, args.devices, args.history_hours, time.time_ns()
            )
            history = (h_start, h_end)
            seeded = (
                f"{points:,} simulated points of the last {args.history_hours:g} h written "
                f"straight to the store in {time.monotonic() - t0:.1f} s; Dagster backfills them"
            )
        if not wait_port(http_port, 30):
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
        sim += ["--spike-every", str(prepare.SPIKE_EVERY_S)]
        procs.append(("simulator", _spawn(sim, env, logs / "simulate.log")))
        api = [sys.executable, "-m", "telemetry_cli", "api", "--port", str(api_port)]
        procs.append(("HTTP API", _spawn(api, env, logs / "api.log")))
        _describe(env, state, config, http_port, api_port, mqtt_port, hook_port, args)
        if seeded:
            print(f"history     {seeded}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        watch(console, http_port, procs, args, history, lambda: stopping)
    except KeyboardInterrupt:
        pass
    except ChildExited as exc:
        print(f"telemetry demo: {exc}; see {logs}", file=sys.stderr)
        status = 1
    finally:
        _stop_all(procs)
        if receiver is not None:
            receiver.stop()
    return status


def _describe(env, state, config, http_port, api_port, mqtt_port, hook_port, args) -> None:
    """Where everything is: printed once, before the live status."""
    from telemetry_cli.demo import prepare

    api = f"http://127.0.0.1:{api_port}"
    print(f"NATS        {env['TELEMETRY_NATS_URL']}  (JetStream in {state / 'nats'})")
    print(
        f"MQTT        127.0.0.1:{mqtt_port}  topic iot/<measurement>/<site>/<device> is subject "
        "iot.<measurement>.<site>.<device>; try (trips the threshold):"
    )
    print("            " + MQTT_EXAMPLE.format(port=mqtt_port))
    print(f"store       {redact_url(env['TELEMETRY_STORE_URL'])}")
    print(f"config      {config}")
    print(f"daemon      http://127.0.0.1:{http_port}/health  and  /metrics")
    print(f"HTTP API    {api}/docs  e.g. {api}/v1/series?measurement=energy&field=power_w")
    print("            &scope=site&site=site-a&start=-3h   and  /v1/alerts")
    if hook_port:
        print(
            f"alerts      power_w above 5000 W -> webhook http://127.0.0.1:{hook_port}/hooks/"
            f"telemetry (verified with ${prepare.SECRET_ENV}, printed here) and "
            f"{state / 'alerts.jsonl'}; `telemetry alerts` lists them"
        )
    if not args.no_dagster:
        print(f"Dagster UI  http://127.0.0.1:{args.dagster_port}  (starting; takes a minute)")
    print(f"logs        {state / 'logs'}", flush=True)


def _stop_all(procs: list[tuple[str, subprocess.Popen]]) -> None:
    """Stop everything, newest first. A second Ctrl-C must not cut this short (that is
    what would leave processes behind), and every stop is bounded in time."""
    from telemetry_cli.demo.dagster_dev import stop_dagster
    from telemetry_cli.services import stop_process

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("\nstopping...", file=sys.stderr, flush=True)
    for name, proc in reversed(procs):
        # dagster dev runs in its own process group: stop the whole tree it started
        code = stop_dagster(proc, 20) if name == "dagster" else stop_process(proc, 20)
        if code not in (0, 130, -signal.SIGTERM, -signal.SIGINT, None):  # 130: its Ctrl-C
            print(f"{name} exited with {code}", file=sys.stderr)


def _spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _start_dagster(state: Path, port: int, env, logs: Path) -> subprocess.Popen | None:
    import importlib.util

    from telemetry_cli.demo.dagster_dev import start_dagster

    if importlib.util.find_spec("dagster") is None:
        print("Dagster is not installed (pip install '.[dagster]'): ingest only", file=sys.stderr)
        return None
    return start_dagster(state / "dagster", port, env, log_path=logs / "dagster.log")
