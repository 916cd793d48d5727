"""What ``telemetry demo`` prepares before its processes start: the config, the webhook
secret, free ports, the store, and hours of history (``dagster_progress`` rolls them up).

History goes straight into the store, not through NATS and the daemon. Through the daemon,
every seeded point would land in a window that ended long ago, so the daemon would mark
each (window, site) late (as it must for real late data), and the late-data sensor would
re-run every seeded window after the backfill had already rolled it up: a second storm of
runs on a laptop, for nothing. Written directly (stream sequence 0, no late cut-off, the
way the store documents seeding) the points mark nothing, and one backfill, the same
object ``telemetry backfill`` launches, rolls them up where the UI shows it.
"""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path
from urllib.parse import urlsplit

from telemetry_cli.ports import free_port, port_in_use

SECRET_ENV = "TELEMETRY_DEMO_WEBHOOK_SECRET"
RECEIVER = "demo-receiver"
SPIKE_EVERY_S = 120.0  # one meter spikes past the threshold every two minutes
HISTORY_INTERVAL_S = 30.0  # seeded devices report every 30 s (live ones faster)

DEMO_CONFIG = """\
# Written by `telemetry demo`; edit freely (unknown keys are an error). Delete this file to
# get the current template again.
[sites.site-a]
timezone = "Europe/Berlin"
work_hours = {{ days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }}
expected_devices = 12

[sites.site-b]
timezone = "America/New_York"
work_hours = {{ days = ["mon", "tue", "wed", "thu", "fri"], start = "07:00", end = "19:00" }}
expected_devices = 12

[sites.site-c]
timezone = "Asia/Tokyo"
work_hours = {{ days = ["mon", "tue", "wed", "thu", "fri", "sat"], start = "09:00", end = "17:00" }}
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

# The simulator makes one energy meter at a time draw 6-8 kW every two minutes: the
# daemon catches it as it arrives, alert_job delivers it (and its resolution).
[[thresholds]]
name = "power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

# A meter that stops reporting for two windows is one alert; a whole site that goes dark
# is one site alert (no device), not one per meter: while site-dark fires for a site, the
# meter-silent alerts of that site are recorded, their notifications suppressed
# ("inhibited by <alert_id>" in `telemetry alerts`).
[[anomalies]]
name = "meter-silent"
kind = "silent"
measurement = "energy"
field = "power_w"
windows = 2
severity = "warning"

[[anomalies]]
name = "site-dark"
kind = "silent"
scope = "site"
measurement = "energy"
field = "power_w"
windows = 2
severity = "critical"

[alerts]
cooldown_seconds = 900
backoff_seconds = 2

[[alerts.inhibit]]
source = {{ rule = "site-dark" }}
target = {{ kind = "silent" }}
equal = ["site_id"]

# Notifications about site-c are muted on Sundays 02:00-04:00 Tokyo time (alerts are still
# recorded). One-off windows use from/until instead; `telemetry silence add` mutes ad hoc.
[[maintenance]]
name = "site-c-sunday"
match = {{ site_id = "site-c" }}
days = ["sun"]
start = "02:00"
end = "04:00"

# The demo's own receiver: it verifies each signature and prints the alert. The demo puts
# a fresh secret in {secret_env} unless you set one (whsec_<base64>).
[[alerts.webhooks]]
name = "{receiver}"
url = "http://127.0.0.1:{receiver_port}/hooks/telemetry"
secret_env = "{secret_env}"
min_severity = "info"

# Every alert event as one JSON line.
[[alerts.files]]
name = "demo-log"
path = {alerts_log}

[retention]
raw_days = 30
rollup_15m_days = 90

# Partitions start at the UTC midnight before the seeded history: the UI then lists the
# windows this demo has, not every quarter-hour since the default start.
[rollups]
start = "{rollups_start}"
"""


def check_ports(ports: dict[str, tuple[int, str]]) -> None:
    """A one-line error for the first port in use, naming what to change."""
    from telemetry_cli.errors import CliError

    for what, (port, remedy) in ports.items():
        if not 0 < port < 65536:
            raise CliError(f"{what} port {port} is not a TCP port ({remedy})")
        if port_in_use(port):
            raise CliError(f"{what} port {port} is in use by another program ({remedy})")


def write_config(path: Path, state: Path, history_hours: float, now_ns: int) -> None:
    """The demo config, once: later starts use the file as the user left it (a later, longer
    history is backfilled from the file's partition start on)."""
    import json
    from datetime import UTC, datetime

    first = datetime.fromtimestamp(now_ns / 1e9 - history_hours * 3600, UTC)
    path.write_text(
        DEMO_CONFIG.format(
            receiver=RECEIVER,
            receiver_port=free_port(),
            secret_env=SECRET_ENV,
            alerts_log=json.dumps(str(state / "alerts.jsonl")),
            rollups_start=first.strftime("%Y-%m-%dT00:00:00Z"),
        )
    )


def webhook_secret(environ: dict[str, str]) -> tuple[str, bytes]:
    """The receiver's secret: the user's, validated, or a fresh one for this run."""
    from telemetry_core.alerts.secrets import PREFIX, decode_secret

    value = environ.get(SECRET_ENV) or PREFIX + base64.b64encode(os.urandom(24)).decode()
    return value, decode_secret(value, SECRET_ENV)


def receiver_port(config_path: Path) -> int | None:
    """The port of the config's ``demo-receiver`` webhook on this machine, if any."""
    from telemetry_core.config import load_config

    for hook in load_config(config_path).alerts.webhooks:
        parts = urlsplit(hook.url)
        if hook.name == RECEIVER and parts.hostname in ("127.0.0.1", "localhost"):
            return parts.port or 80
    return None


def seed_history(
    store_url: str, sites: int, devices: int, hours: float, end_ns: int
) -> tuple[int, int, int]:
    """Simulated readings for ``[end - hours, end)`` into the store, up to the first reading
    already there (a restart fills the gap, never rewrites the previous run's data).
    Returns (points written, seeded start, seeded end)."""
    from telemetry_core.fleet import Fleet, Spikes, reading
    from telemetry_core.store import open_store
    from telemetry_core.timeutil import NS

    start = end_ns - int(hours * 3600 * NS)
    fleet = Fleet(sites, devices, seed=1)
    store = open_store(store_url)
    try:
        probe = fleet.meters[0] if fleet.meters else fleet.devices[0]
        field = "power_w" if probe.measurement == "energy" else None
        existing = store.read_points(
            start,
            end_ns,
            measurement=probe.measurement,
            site_id=probe.site_id,
            device_id=probe.device_id,
            field=field,
        )
        if existing.height:
            end_ns = int(existing["time"].sort()[0])
        rng = random.Random(start)
        spikes = Spikes(start, SPIKE_EVERY_S, length_s=HISTORY_INTERVAL_S)  # one reading each
        step = int(HISTORY_INTERVAL_S * NS)
        written = 0
        batch: list[tuple[str, str, str, str, int, float]] = []
        for t in range(start, end_ns, step):
            hot = fleet.spiking(spikes, t)
            for dev in fleet.devices:
                values = reading(dev, t, HISTORY_INTERVAL_S, rng, spike=dev is hot)
                for name, value in values.items():
                    batch.append(
                        (dev.measurement, dev.site_id, dev.device_id, name, t, float(value))
                    )
            if len(batch) >= 50_000:
                written += store.write_points(batch).points
                batch = []
        if batch:
            written += store.write_points(batch).points
    finally:
        store.close()
    return written, start, max(start, end_ns)


def mqtt_port() -> int:
    """TELEMETRY_MQTT_PORT when set (a port in use is then a one-line error); otherwise 1883,
    or, when another broker already holds 1883 (Mosquitto often does on IoT machines), any
    free port, said in one line: the default must not stop the demo from starting."""
    from telemetry_cli.errors import CliError

    value = os.environ.get("TELEMETRY_MQTT_PORT")
    if value is None or value == "":
        if not port_in_use(1883):
            return 1883
        port = free_port()
        print(f"MQTT port 1883 is taken by another program: using {port} "
              "(set TELEMETRY_MQTT_PORT to choose)")  # fmt: skip
        return port
    if not value.isdigit():
        raise CliError(f"TELEMETRY_MQTT_PORT must be a port number, got {value!r}")
    return int(value)


def check_store(url: str) -> None:
    """Open the store once before anything starts: a wrong URL, an unreachable server or a
    missing database is one line now, not a daemon that dies in the background."""
    from telemetry_cli.errors import CliError
    from telemetry_core.store import StoreError, StoreUnavailable, open_store
    from telemetry_core.store.urls import redact_url

    try:
        store = open_store(url)
        try:
            store.ping()  # stores that connect lazily (PostgreSQL) are reached here
        finally:
            store.close()
    except (StoreError, StoreUnavailable) as exc:
        raise CliError(f"store {redact_url(url)}: {exc}") from None
