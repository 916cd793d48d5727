"""Helpers for the Dagster-side alert tests: an environment with a store, a config with
anomaly rules and a webhook, recent windows, and runs of the real jobs."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from telemetry_assets.names import RANGE_END_TAG, RANGE_START_TAG
from telemetry_core.config import Config, load_config
from telemetry_core.windows import WINDOW_15M_NS, partition_key, window_start

S = 1_000_000_000
W = WINDOW_15M_NS
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

RULES = """
[fields]
"energy.power_w" = "gauge"

[[anomalies]]
name = "meter-stuck"
kind = "stuck"
measurement = "energy"
field = "power_w"
windows = 2
severity = "critical"

[[anomalies]]
name = "power-unusual"
kind = "zscore"
measurement = "energy"
field = "power_w"
min_history = 3
severity = "warning"

[[thresholds]]
name = "power-high"
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[alerts]
cooldown_seconds = 0
backoff_seconds = 1
max_attempts = 3
"""


def webhook_toml(url: str, secret_env: str = "OPS_SECRET") -> str:
    return textwrap.dedent(
        f"""
        [[alerts.webhooks]]
        name = "ops"
        url = "{url}"
        secret_env = "{secret_env}"
        min_severity = "warning"
        """
    )


def set_env(folder: Path, monkeypatch: pytest.MonkeyPatch, toml: str = RULES) -> Config:
    """Store, config (and a webhook secret) in the environment, as a deployment sets them;
    the alerts database is the store's SQLite file (no TELEMETRY_ALERTS_DB)."""
    path = folder / "telemetry.toml"
    path.write_text(toml)
    monkeypatch.setenv("TELEMETRY_STORE_URL", f"sqlite:///{folder / 'telemetry.db'}")
    monkeypatch.setenv("TELEMETRY_CONFIG", str(path))
    monkeypatch.setenv("OPS_SECRET", SECRET)
    monkeypatch.delenv("TELEMETRY_ALERTS_DB", raising=False)
    return load_config(path)


def recent_windows(n: int) -> list[int]:
    """``n`` consecutive windows that have all ended and are all recent enough to notify
    (the newest ended at least 15 minutes ago, the oldest ended less than 2 h ago)."""
    last = window_start(time.time_ns() - 2 * W)
    return [last - (n - 1 - i) * W for i in range(n)]


def readings(windows: list[int], device: str, values: list[float]) -> list[tuple]:
    """One power_w reading per value, spread over each window."""
    out = []
    for ws in windows:
        for i, value in enumerate(values):
            out.append(("energy", "site-a", device, "power_w", ws + (i + 1) * 60 * S, value))
    return out


def materialise(defs: dg.Definitions, instance: dg.DagsterInstance, windows: list[int]) -> str:
    """Run the real rollup_15m_job over ``windows`` (one partition or a range); run id."""
    first, last = partition_key(windows[0]), partition_key(windows[-1])
    tags = {} if first == last else {RANGE_START_TAG: first, RANGE_END_TAG: last}
    result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
        instance=instance, partition_key=first if first == last else None, tags=tags
    )
    assert result.success
    return result.run_id


def run_request(
    defs: dg.Definitions, instance: dg.DagsterInstance, job: str, request: dg.RunRequest, **kw
) -> dg.ExecuteInProcessResult:
    """Execute a sensor's run request of ``job`` in process, as the daemon would launch it."""
    job_def = defs.resolve_job_def(job)
    return job_def.execute_in_process(
        instance=instance, run_config=request.run_config, tags=dict(request.tags), **kw
    )


def step_metadata(result: dg.ExecuteInProcessResult, op: str) -> dict:
    """The values of the metadata an op put on its output."""
    for event in result.events_for_node(op):
        if event.event_type_value == "STEP_OUTPUT":
            return {k: v.value for k, v in event.event_specific_data.metadata.items()}
    raise AssertionError(f"no output event for {op}")
