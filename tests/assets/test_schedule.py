"""The 15-minute schedule follows ``[rollups] grace_seconds``: its cron minute, and the
window each tick picks (the newest one that ended at least the grace period before it)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import dagster as dg
import pytest

from telemetry_assets.definitions import build_defs
from telemetry_core.config import parse_config


def schedule_for(grace: int | None) -> dg.ScheduleDefinition:
    rollups = {} if grace is None else {"rollups": {"grace_seconds": grace}}
    repo = build_defs(parse_config(rollups)).get_repository_def()
    return repo.get_schedule_def("rollup_15m_schedule"), repo


def tick(schedule_repo, *hm: int, day: int = 20, year: int = 2026, month: int = 11) -> str:
    schedule, repo = schedule_repo
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(year, month, day, *hm, tzinfo=UTC),
        repository_def=repo,
    )
    (request,) = list(schedule.evaluate_tick(context).run_requests)
    assert request.run_key == request.partition_key
    return request.partition_key


@pytest.mark.parametrize(
    ("grace", "cron", "ticks"),
    [
        # default 120 s: two minutes after each quarter
        (None, "2-59/15 * * * *", [((10, 17), "2026-11-20-10:00"), ((10, 2), "2026-11-20-09:45")]),
        # 600 s: ten minutes after; at 10:25 the 10:00 window ended 10 minutes ago
        (600, "10-59/15 * * * *", [((10, 25), "2026-11-20-10:00"), ((10, 10), "2026-11-20-09:45")]),
        # 90 s: cron has no seconds, so the tick is the next whole minute (2), same window
        (90, "2-59/15 * * * *", [((10, 17), "2026-11-20-10:00")]),
        # 0: on the boundary itself, the window that just ended
        (0, "0-59/15 * * * *", [((10, 15), "2026-11-20-10:00"), ((0, 0), "2026-11-19-23:45")]),
        # 1200 s (longer than a window): minute 5, two windows back
        (1200, "5-59/15 * * * *", [((10, 20), "2026-11-20-09:45")]),
    ],
)
def test_grace_seconds_sets_cron_and_window(grace, cron, ticks):
    schedule, repo = schedule_for(grace)
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "rollup_15m_job"
    for hm, key in ticks:
        assert tick((schedule, repo), *hm) == key, (grace, hm)


def test_each_tick_of_a_day_takes_the_next_window():
    """Consecutive ticks cover consecutive windows: none skipped, none twice."""
    for grace in (0, 90, 120, 600, 1200):
        schedule = schedule_for(grace)
        minute = int(schedule[0].cron_schedule.split("-")[0])
        keys = [tick(schedule, h, m + minute) for h in range(24) for m in (0, 15, 30, 45)]
        starts = [datetime.strptime(k, "%Y-%m-%d-%H:%M") for k in keys]
        gaps = {(b - a).total_seconds() for a, b in pairwise(starts)}
        assert gaps == {900.0}, grace


def test_midnight_and_new_year():
    schedule = schedule_for(None)
    assert tick(schedule, 0, 2, day=21) == "2026-11-20-23:45"
    assert tick(schedule, 0, 2, year=2027, month=1, day=1) == "2026-12-31-23:45"
