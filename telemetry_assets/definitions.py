"""The one place that assembles the Dagster code location.

``build_defs(config, store_url)`` is a pure function of the configuration: ``[rollups]
start`` places the partitions, ``[rollups] grace_seconds`` sets the schedule's cron, the
store URL's scheme labels the assets' kinds. ``defs`` is ``@dg.definitions``: Dagster calls
it when it *loads* the code location (the code server, each run worker), which is when
``TELEMETRY_CONFIG`` and ``TELEMETRY_STORE_URL`` are read; importing this module reads
nothing. So a changed ``[rollups]`` takes effect on the next load ("Reload" in the UI, or a
restart), and a broken config fails the load with the config error as its message.
Sites, field kinds and expected devices are read again each time a run opens the store.

Runs execute in process: every step of a rollup run is a few store queries, and a
subprocess per step would cost more than the work.
"""

from __future__ import annotations

import os

import dagster as dg

from telemetry_assets.assets import build_raw_points, build_rollup_assets
from telemetry_assets.assets.metadata import describe_assets
from telemetry_assets.checks import build_checks
from telemetry_assets.jobs import (
    alert_job,
    anomaly_job,
    retention_job,
    retention_schedule,
    rollup_1h_job,
    rollup_15m_job,
)
from telemetry_assets.partitions import build_partitions
from telemetry_assets.resources import TelemetryStore, store_kind
from telemetry_assets.schedules import build_rollup_15m_schedule
from telemetry_assets.sensors import (
    build_alert_sensor,
    build_anomaly_sensor,
    build_late_data_sensor,
    rollup_1h_follow_sensor,
)
from telemetry_core.config import Config, load_config
from telemetry_core.store import check_retention


def build_defs(config: Config | None = None, *, store_url: str | None = None) -> dg.Definitions:
    """The code location for ``config`` (defaults when None) and the store at
    ``store_url`` (the embedded SQLite default when None)."""
    config = config or Config()
    kind = store_kind(store_url)
    partitions = build_partitions(config.rollups.start_ns)
    rollups = build_rollup_assets(partitions, kind)
    return dg.Definitions(
        assets=describe_assets([build_raw_points(kind), *rollups], store_url),
        asset_checks=build_checks(rollups),
        jobs=[rollup_15m_job, rollup_1h_job, anomaly_job, alert_job, retention_job],
        schedules=[
            build_rollup_15m_schedule(config.rollups),
            *([retention_schedule] if config.retention.enabled else []),
        ],
        sensors=[
            build_late_data_sensor(config.rollups.start_ns),
            rollup_1h_follow_sensor,
            build_anomaly_sensor(config),
            build_alert_sensor(config),
        ],
        resources={"store": TelemetryStore()},
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by Dagster (``dagster dev``, workspace.yaml, run workers), not at import.
    A store whose server cannot delete (InfluxDB 3.x through ``influxdb://``) fails the
    load while ``[retention]`` is on, rather than the daily retention job."""
    config, store_url = load_config(), os.environ.get("TELEMETRY_STORE_URL")
    if config.retention.enabled:
        check_retention(store_url)
    return build_defs(config, store_url=store_url)
