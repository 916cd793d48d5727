"""A throwaway local Dagster (webserver + daemon) for ``telemetry demo``, tests and benchmarks.

Imports nothing from Dagster: it writes an instance file and starts ``dagster dev`` in a
subprocess. The instance lives in ``home`` (SQLite storage) and survives restarts of the
demo; ``dagster dev`` without ``DAGSTER_HOME`` would use a temporary folder and delete it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOCAL_INSTANCE = """\
# Written by telemetry_cli.demo.dagster_dev: a local instance for `telemetry demo` (SQLite storage
# under this folder). Production uses the repository's dagster.yaml (PostgreSQL).
storage:
  sqlite:
    base_dir: {storage}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # Queued runs start within a second (default 5 s): alert_job's share of the
    # publish -> webhook latency.
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    default_limit: 1
    granularity: op
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
telemetry:
  enabled: false
# No first-run "join the community" dialog in front of the asset graph (the UI asks the
# instance: shouldShowNux is nux.enabled and no .nux/nux.yaml under DAGSTER_HOME).
nux:
  enabled: false
"""


def write_instance(home: Path, *, max_runs: int = 2) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(
        LOCAL_INSTANCE.format(storage=json.dumps(str(home / "storage")), max_runs=max_runs)
    )
    return path


def dagster_command() -> list[str]:
    exe = Path(sys.executable).with_name("dagster")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dagster"]


def start_dagster(
    home: Path,
    port: int,
    env: dict[str, str],
    *,
    log_path: Path | None = None,
    module: str = "telemetry_assets.definitions",
) -> subprocess.Popen:
    """Write ``home/dagster.yaml`` and start ``dagster dev`` on 127.0.0.1:``port``.

    ``env`` is laid over the current environment (pass TELEMETRY_STORE_URL and
    TELEMETRY_CONFIG there); schedules and sensors start RUNNING by their defaults. The
    working directory is inherited, so a relative store URL means the same file as for
    the ingest daemon started next to it.
    """
    home = Path(home).resolve()
    write_instance(home)
    run_env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    cmd = [*dagster_command(), "dev", "-m", module, "-h", "127.0.0.1", "-p", str(port)]
    # Its own session (so its own process group): stop_dagster signals the whole tree, and
    # a Ctrl-C in the demo's terminal does not hit its children behind the demo's back.
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
    return subprocess.Popen(cmd, env=run_env, start_new_session=True)


def stop_dagster(proc: subprocess.Popen | None, timeout: float = 20.0) -> int | None:
    """Stop ``dagster dev`` and every process it started (webserver, daemon, code servers,
    run workers): SIGTERM to its process group, SIGKILL to what is left after ``timeout``."""
    from telemetry_cli.services import stop_process_group

    return stop_process_group(proc, timeout)
