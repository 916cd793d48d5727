"""Jobs. anomaly_job and alert_job come with a later issue."""

from telemetry_assets.jobs.rollups import rollup_1h_job, rollup_15m_job

__all__ = ["rollup_1h_job", "rollup_15m_job"]
