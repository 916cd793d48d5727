"""An InfluxDB 1.x ``influxd`` of our own, for the contract tests and the InfluxDB bench."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from telemetry_cli.ports import free_port
from telemetry_cli.services import stop_process

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
