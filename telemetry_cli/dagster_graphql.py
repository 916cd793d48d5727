"""The one client of a Dagster webserver's GraphQL API: the call, its failure as one line,
and whether the webserver is ready.

Imports nothing from Dagster: ``telemetry backfill`` and ``telemetry demo`` talk to a
webserver the way the UI does, so what they launch is what the UI shows.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

READY_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name locationOrLoadError { __typename } } } } }
"""


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


def ask(url: str, query: str, variables: dict | None = None) -> dict:
    """:func:`graphql` for the CLI: a failure is one line (``CliError``) that says whether
    the webserver is unreachable (and how to get one) or refused the request, never a
    traceback."""
    from telemetry_cli.errors import CliError

    try:
        return graphql(url, query, variables)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot reach the Dagster webserver at {url} ({reason}); start it with "
            "`dagster dev` or `telemetry demo`, or set --url / TELEMETRY_DAGSTER_URL"
        ) from None
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CliError(f"the Dagster webserver at {url} refused the request: {first}") from None


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
