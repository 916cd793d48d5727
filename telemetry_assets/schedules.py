"""The 15-minute schedule: each window runs once its grace period is over.

``build_schedule_from_partitioned_job`` refuses an offset for 15-minute jobs, so this is a
plain ``@schedule`` two minutes after each quarter ("2-59/15") that rolls up the window
which ended ``GRACE_SECONDS`` ago. The hourly and multi-site rollups follow through
``rollup_1h_follow_sensor`` (sensors.follow): an hour is recomputed as soon as one of its
quarters lands, so nothing waits on a guessed delay.
"""

from datetime import datetime, timedelta

import dagster as dg

from telemetry_assets.jobs import rollup_15m_job
from telemetry_assets.partitions import quarter_hour_partitions

# Matches the cron offset below and the default ``[rollups] grace_seconds``.
GRACE_SECONDS = 120


def partition_for_tick(scheduled: datetime) -> str | None:
    """The 15-minute window that ended ``GRACE_SECONDS`` before ``scheduled``."""
    return quarter_hour_partitions.get_partition_key_for_timestamp(
        (scheduled - timedelta(seconds=GRACE_SECONDS)).timestamp(), end_closed=True
    )


@dg.schedule(
    cron_schedule="2-59/15 * * * *",
    job=rollup_15m_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Roll up each 15-minute window two minutes (the grace period) after it ends.",
)
def rollup_15m_schedule(context: dg.ScheduleEvaluationContext):
    key = partition_for_tick(context.scheduled_execution_time)
    if key is None:
        return dg.SkipReason("no complete window yet")
    return dg.RunRequest(run_key=key, partition_key=key)
