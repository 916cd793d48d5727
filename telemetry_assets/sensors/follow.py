"""Hourly and multi-site rollups follow their quarters, with no UI toggle.

When a run that wrote 15-minute rollups succeeds (the schedule's, or one launched by hand),
the hour(s) it touched are recomputed with the same site scope. Backfills are left alone
(the backfill daemon already runs the hourly assets after their parents), and so are the
late-data sensor's runs (that sensor sequences its own hourly runs).
"""

import time

import dagster as dg

from telemetry_assets.jobs import rollup_1h_job
from telemetry_assets.names import (
    BACKFILL_TAG,
    LATE_BATCH_TAG,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SITE_TAG,
)
from telemetry_core.windows import HOUR_NS, parse_partition_key, partition_key, window_start

QUARTER_JOB = "rollup_15m_job"
QUARTER_ASSET = dg.AssetKey("rollup_15m")


def wrote_quarters(run: dg.DagsterRun) -> bool:
    if run.job_name == QUARTER_JOB:
        return True
    selection = run.asset_selection
    return selection is not None and QUARTER_ASSET in selection


def hours_of_run(tags: dict[str, str], now_ns: int) -> tuple[str, str] | None:
    """First and last hourly partition key covering the run's 15-minute key or range,
    leaving out the hour still running: it is no partition yet (Dagster would refuse the
    request), and the run of its last quarter, after the hour ends, brings it in."""
    first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
    last = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
    if not first or not last:
        return None
    try:
        a, b = parse_partition_key(first), parse_partition_key(last)
    except ValueError:
        return None
    last_complete = window_start(now_ns, HOUR_NS) - HOUR_NS
    first_hour, last_hour = window_start(a, HOUR_NS), min(window_start(b, HOUR_NS), last_complete)
    if last_hour < first_hour:
        return None
    return partition_key(first_hour), partition_key(last_hour)


def follow_requests(run: dg.DagsterRun, now_ns: int | None = None) -> list[dg.RunRequest]:
    tags = dict(run.tags)
    if BACKFILL_TAG in tags or LATE_BATCH_TAG in tags or not wrote_quarters(run):
        return []
    hours = hours_of_run(tags, time.time_ns() if now_ns is None else now_ns)
    if hours is None:
        return []
    first, last = hours
    extra = {SITE_TAG: tags[SITE_TAG]} if tags.get(SITE_TAG) else {}
    run_key = f"follow:{run.run_id}"
    if first == last:
        return [dg.RunRequest(run_key=run_key, partition_key=first, tags=extra)]
    return [
        dg.RunRequest(
            run_key=run_key,
            tags={**extra, RANGE_START_TAG: first, RANGE_END_TAG: last},
        )
    ]


@dg.run_status_sensor(
    name="rollup_1h_follow_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=rollup_1h_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Recompute the hourly device/site/portfolio rollups of every hour whose "
    "15-minute rollups a scheduled or manual run just rewrote.",
)
def rollup_1h_follow_sensor(context: dg.RunStatusSensorContext):
    requests = follow_requests(context.dagster_run)
    if not requests:
        return dg.SkipReason(
            f"run {context.dagster_run.run_id} wrote no 15-minute rollups of a finished hour"
        )
    return requests
