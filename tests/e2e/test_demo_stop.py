"""Stopping ``telemetry demo`` stops every process it started, Dagster's whole tree
included (webserver, daemon, code server, gRPC server): nothing survives, the ports are
free, and a second demo starts on the same ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_cli.dagster_graphql import wait_ready
from telemetry_cli.services import stop_process, stop_process_group
from tests.conftest import free_port
from tests.daemon.conftest import wait_until

pytestmark = pytest.mark.slow


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return out


def tree(root: int) -> dict[int, str]:
    """Every live descendant of ``root`` (and root): pid -> start time (against pid reuse)."""
    table = processes()
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid: table[pid][2] for pid in found if pid in table}


def survivors(snapshot: dict[int, str]) -> list[int]:
    table = processes()
    return [
        pid
        for pid, started in snapshot.items()
        if pid in table and table[pid][2] == started and table[pid][1] not in ("Z", "X")
    ]


def port_free(port: int) -> bool:
    """Nothing listens on ``port``: bind as servers do (SO_REUSEADDR, so connections of
    ours closing in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_group_stop_kills_children_that_ignore_sigterm():
    """The escalation path: a child that ignores SIGTERM (as `dagster code-server` does)
    still goes; stopping only the parent would leave it running."""
    script = "trap '' TERM; sleep 300 & echo $!; wait"
    leader = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(leader.stdout.readline())
    snapshot = tree(leader.pid)
    assert child in snapshot
    stop_process_group(leader, timeout=1.0)
    assert survivors(snapshot) == []

    # the old way, for contrast: SIGTERM/SIGKILL to the parent only orphans the child
    leader = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(leader.stdout.readline())
    snapshot = tree(leader.pid)
    stop_process(leader, timeout=1.0)
    try:
        assert child in survivors(snapshot)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)


def start_demo(state: Path, port: int) -> subprocess.Popen:
    """The demo as a user's terminal runs it: its own foreground group, so a Ctrl-C is a
    SIGINT to that group (demo, nats-server, ingest daemon, simulator) — not to Dagster."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TELEMETRY_CONFIG", None)
    env.pop("TELEMETRY_STORE_URL", None)
    env["TELEMETRY_MQTT_PORT"] = str(free_port())  # 1883 may be another broker's
    cmd = [sys.executable, "-m", "telemetry_cli", "demo", "--state-dir", str(state)]
    cmd += ["--dagster-port", str(port), "--rate", "20", "--sites", "1", "--devices", "2"]
    cmd += ["--api-port", "0"]
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def freeze_dagster_daemon(pids) -> None:
    """SIGSTOP the Dagster daemon: a child too busy (or hung) to act on SIGTERM, as under
    load. Stopping only dagster dev then left such children running, holding ports."""
    (daemon,) = [pid for pid in pids if "dagster._daemon run" in cmdline(pid)]
    os.kill(daemon, signal.SIGSTOP)


def run_and_stop(state: Path, port: int, stop, *, freeze: bool = False) -> None:
    demo = start_demo(state, port)
    try:
        if not wait_ready(port, 240, proc=demo):
            demo.kill()
            pytest.fail("the demo's Dagster did not start:\n" + demo.communicate()[0][-3000:])
        # nats-server, ingest daemon, simulator, and dagster dev with its children
        wait_until(lambda: len(tree(demo.pid)) >= 9, 60, "the demo's whole process tree")
        snapshot = tree(demo.pid)
        if freeze:
            freeze_dagster_daemon(snapshot)
        stop(demo)
        output, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    wait_until(lambda: survivors(snapshot) == [], 10, "every process of the demo to exit")
    assert port_free(port)


def test_demo_stops_its_whole_tree_and_starts_again(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    # Ctrl-C in a terminal: SIGINT to the demo's foreground group; the Dagster daemon
    # hangs, so only the SIGKILL of the whole group after the grace period ends it
    run_and_stop(state, port, lambda demo: os.killpg(demo.pid, signal.SIGINT), freeze=True)
    # the same ports again, stopped with SIGTERM to the demo alone this time
    run_and_stop(state, port, lambda demo: demo.send_signal(signal.SIGTERM))
