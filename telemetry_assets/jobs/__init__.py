"""Jobs: rollups per grain, anomaly_job (anomaly rules per window), alert_job (the outbox)."""

from telemetry_assets.jobs.alerts import alert_job
from telemetry_assets.jobs.anomaly import anomaly_job
from telemetry_assets.jobs.rollups import rollup_1h_job, rollup_15m_job

__all__ = ["alert_job", "anomaly_job", "rollup_1h_job", "rollup_15m_job"]
