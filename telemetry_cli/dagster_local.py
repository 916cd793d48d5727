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
import time
import urllib.error
import urllib.request
from pathlib import Path

LOCAL_INSTANCE = """\
# Written by telemetry_cli.dagster_local: a local instance for `telemetry demo` (SQLite storage
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

READY_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename } } } } }
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


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
    """POST a GraphQL query to a Dagster webserver; returns ``data`` or raises."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # it answered, with an error: not "unreachable"
        payload = _error_payload(exc)
    if payload.get("errors"):
        raise RuntimeError("; ".join(e.get("message", str(e)) for e in payload["errors"]))
    return payload["data"]


def _error_payload(exc: urllib.error.HTTPError) -> dict:
    """GraphQL errors from an HTTP error answer (Dagster answers some refusals, e.g. an
    unknown asset key, with status 500 and a GraphQL error body)."""
    body = exc.read().decode(errors="replace").strip()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("errors"):
        return payload
    detail = body.splitlines()[0] if body else exc.reason
    raise RuntimeError(f"HTTP {exc.code}: {detail}") from None


def is_ready(url: str) -> bool:
    """The webserver answers and the code location has loaded."""
    try:
        data = graphql(url, READY_QUERY, timeout=5)
    except (OSError, RuntimeError, ValueError):
        return False
    workspace = data.get("workspaceOrError") or {}
    entries = workspace.get("locationEntries") or []
    return bool(entries) and all(
        (e.get("locationOrLoadError") or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def wait_ready(
    port: int,
    timeout: float = 120.0,
    host: str = "127.0.0.1",
    proc: subprocess.Popen | None = None,
) -> bool:
    """Wait until the webserver on ``port`` serves the loaded code location (False on
    timeout, or as soon as ``proc`` exits)."""
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if is_ready(url):
            return True
        time.sleep(0.5)
    return False
