"""Jobs: rollups per grain, anomaly_job (anomaly rules per window), alert_job (the outbox),
retention_job ([retention], with its daily schedule)."""

from telemetry_assets.jobs.alerts import alert_job
from telemetry_assets.jobs.anomaly import anomaly_job
from telemetry_assets.jobs.retention import retention_job, retention_schedule
from telemetry_assets.jobs.rollups import rollup_1h_job, rollup_15m_job

__all__ = [
    "alert_job",
    "anomaly_job",
    "retention_job",
    "retention_schedule",
    "rollup_1h_job",
    "rollup_15m_job",
]
