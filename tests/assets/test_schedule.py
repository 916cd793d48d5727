"""The 15-minute schedule picks the window that ended a grace period before the tick."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from telemetry_assets.schedules import rollup_15m_schedule


@pytest.mark.parametrize(
    ("tick", "key"),
    [
        (datetime(2026, 11, 20, 10, 17, tzinfo=UTC), "2026-11-20-10:00"),
        (datetime(2026, 11, 20, 10, 2, tzinfo=UTC), "2026-11-20-09:45"),
        (datetime(2026, 11, 21, 0, 2, tzinfo=UTC), "2026-11-20-23:45"),  # midnight
        (datetime(2027, 1, 1, 0, 2, tzinfo=UTC), "2026-12-31-23:45"),  # new year
    ],
)
def test_schedule_picks_partition(defs, tick, key):
    context = dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    )
    (request,) = list(rollup_15m_schedule.evaluate_tick(context).run_requests)
    assert request.partition_key == key
    assert request.run_key == key


def test_cron_runs_two_minutes_after_each_quarter():
    assert rollup_15m_schedule.cron_schedule == "2-59/15 * * * *"
    assert rollup_15m_schedule.execution_timezone == "UTC"
    assert rollup_15m_schedule.job_name == "rollup_15m_job"
