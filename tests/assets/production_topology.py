"""Dagster in its production topology, on this machine: the root ``dagster.yaml`` on the
local PostgreSQL, a code server, and a webserver and a daemon reading ``workspace.yaml``
(which points at the code server over gRPC). Used by tests/assets/test_production_topology.py
and bench/bench_rollups.py.

Each process runs in its own session (process group), so stopping one stops everything it
started: the code server's ``dagster api grpc`` child and the run workers it launched. The
code server ignores SIGTERM (STACK_FACTS), so it gets a short grace period and SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from telemetry_cli.dagster_graphql import graphql, wait_ready
from telemetry_cli.services import group_alive, stop_process_group
from tests.conftest import free_port
from tests.pg import PG

REPO = Path(__file__).resolve().parents[2]
LOCATION = "telemetry"
# Materialisations of a range run are written in one statement per step (dagster-postgres'
# batch insert) instead of one transaction each: ~25 ms -> ~1 ms a partition here.
EVENT_BATCH_SIZE = "10000"

DAEMON_HEALTH = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


def dagster_env(home: Path, database: str, code_port: int) -> dict[str, str]:
    """What every Dagster process of the deployment gets (docs/dagster.md, Deployment)."""
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(code_port),
        "DAGSTER_EVENT_BATCH_SIZE": EVENT_BATCH_SIZE,
    }


def _bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


@dataclass
class Topology:
    folder: Path
    url: str
    web_port: int
    code_port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def tail(self, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {name}.log\n{self.log(name).read_text(errors='replace')[-chars:]}"
            for name in self.procs
        )

    def daemons_healthy(self) -> bool:
        try:
            data = graphql(self.url, DAEMON_HEALTH, timeout=10)
        except (OSError, RuntimeError, ValueError):
            return False
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return bool(statuses) and all(s["healthy"] for s in statuses if s["required"])


def start_topology(folder: Path, database: str, env: dict[str, str]) -> Topology:
    """Start code server, webserver and daemon (in that order), each in its own session.

    ``env`` (TELEMETRY_STORE_URL, TELEMETRY_CONFIG) goes to every process; the code server
    is the one that needs it: it loads the definitions, evaluates sensors, and launches the
    run workers, which inherit its environment.
    """
    home = folder / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    code_port, web_port = free_port(), free_port()
    full_env = {**os.environ, **env, **dagster_env(home, database, code_port)}
    workspace = str(REPO / "workspace.yaml")
    commands = {
        "code_server": [
            _bin("dagster"), "code-server", "start",
            "-m", "telemetry_assets.definitions", "--location-name", LOCATION,
            "-h", "127.0.0.1", "-p", str(code_port),
        ],
        "webserver": [
            _bin("dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(web_port),
        ],
        "daemon": [_bin("dagster-daemon"), "run", "-w", workspace],
    }  # fmt: skip
    topo = Topology(folder, f"http://127.0.0.1:{web_port}", web_port, code_port)
    try:
        for name, cmd in commands.items():
            with open(topo.log(name), "ab") as log:
                topo.procs[name] = subprocess.Popen(
                    cmd,
                    env=full_env,
                    cwd=folder,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
    except BaseException:
        stop_topology(topo)
        raise
    return topo


def wait_topology(topo: Topology, timeout: float = 180.0) -> str | None:
    """None once the webserver serves the code server's location and the daemon's required
    daemons are healthy; else what was not ready (or which process died)."""
    deadline = time.monotonic() + timeout
    if not wait_ready(topo.web_port, timeout, proc=topo.procs["webserver"]):
        return "the webserver did not load the code location from the code server"
    while time.monotonic() < deadline:
        for name, proc in topo.procs.items():
            if proc.poll() is not None:
                return f"{name} exited with {proc.returncode}"
        if topo.daemons_healthy():
            return None
        time.sleep(1)
    return "the daemon did not report healthy"


def stop_topology(topo: Topology) -> list[str]:
    """Stop the daemon, the webserver, then the code server (and the run workers it
    started); returns the names of the process groups that survived (none, normally)."""
    grace = {"daemon": 20.0, "webserver": 20.0, "code_server": 5.0}
    for name in ("daemon", "webserver", "code_server"):
        proc = topo.procs.get(name)
        if proc is not None:
            stop_process_group(proc, grace[name])
    return [name for name, proc in topo.procs.items() if group_alive(proc.pid)]
