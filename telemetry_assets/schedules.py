"""The 15-minute schedule: each window runs once ``[rollups] grace_seconds`` are over.

``build_schedule_from_partitioned_job`` refuses an offset for 15-minute jobs, so this is a
plain ``@schedule`` whose cron minute is the grace period rounded up to whole minutes
(cron has no seconds): the default 120 s gives ``2-59/15`` (at 10:17 the 10:00-10:15
window), 600 s gives ``10-59/15``, 0 gives ``0-59/15``. Each tick picks the newest window
that ended at least the grace period before it, so consecutive ticks take consecutive
windows. The schedule is built from the config when the code location loads: after
changing ``grace_seconds``, reload the location. The hourly and multi-site rollups follow
through ``rollup_1h_follow_sensor`` (sensors.follow).
"""

from datetime import datetime

import dagster as dg

from telemetry_assets.jobs import rollup_15m_job
from telemetry_core.config import Rollups
from telemetry_core.timeutil import from_datetime, now_ns
from telemetry_core.windows import MINUTE_NS, WINDOW_15M_NS, partition_key, window_start

QUARTER_MINUTES = WINDOW_15M_NS // MINUTE_NS


def schedule_cron(grace_seconds: int) -> str:
    """Minute offset within each quarter: the grace period rounded up to a whole minute."""
    minute = -(-grace_seconds // 60) % QUARTER_MINUTES
    return f"{minute}-59/15 * * * *"


def partition_for_tick(tick_ns: int, grace_seconds: int, first_ns: int) -> str | None:
    """The newest 15-minute window that ended at least ``grace_seconds`` before the tick
    (None before the first partition)."""
    start = window_start(tick_ns - grace_seconds * 1_000_000_000) - WINDOW_15M_NS
    return partition_key(start) if start >= first_ns else None


def build_rollup_15m_schedule(rollups: Rollups) -> dg.ScheduleDefinition:
    grace, first = rollups.grace_seconds, rollups.start_ns

    @dg.schedule(
        name="rollup_15m_schedule",
        cron_schedule=schedule_cron(grace),
        job=rollup_15m_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Roll up each 15-minute window once the grace period ([rollups] "
        f"grace_seconds = {grace}) after its end is over.",
    )
    def rollup_15m_schedule(context: dg.ScheduleEvaluationContext):
        tick: datetime | None = context.scheduled_execution_time
        key = partition_for_tick(from_datetime(tick) if tick else now_ns(), grace, first)
        if key is None:
            return dg.SkipReason("no complete window since [rollups] start yet")
        return dg.RunRequest(run_key=key, partition_key=key)

    return rollup_15m_schedule
