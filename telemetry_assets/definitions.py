"""The one place that assembles the Dagster code location.

Nothing here reads the environment: the store resource resolves ``TELEMETRY_STORE_URL`` and
``TELEMETRY_CONFIG`` when a run opens it. Runs execute in process: every step of a rollup
run is a few store queries, and a subprocess per step would cost more than the work.
"""

import dagster as dg

from telemetry_assets.assets import ROLLUP_ASSETS, raw_points
from telemetry_assets.checks import ALL_CHECKS
from telemetry_assets.jobs import rollup_1h_job, rollup_15m_job
from telemetry_assets.resources import TelemetryStore
from telemetry_assets.schedules import rollup_15m_schedule
from telemetry_assets.sensors import late_data_sensor, rollup_1h_follow_sensor

defs = dg.Definitions(
    assets=[raw_points, *ROLLUP_ASSETS],
    asset_checks=ALL_CHECKS,
    jobs=[rollup_15m_job, rollup_1h_job],
    schedules=[rollup_15m_schedule],
    sensors=[late_data_sensor, rollup_1h_follow_sensor],
    resources={"store": TelemetryStore()},
    executor=dg.in_process_executor,
)
