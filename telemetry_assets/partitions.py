"""Partitions: 15-minute and hourly windows, always in UTC, from ``[rollups] start``.

Why UTC: a local-time sub-hourly partition key is ambiguous or missing at DST changes;
work hours are a per-site *column* (``is_work_hours``), never a partition dimension, and so
is the site (one partition per site would multiply run overhead by the number of sites).

Keys are window starts in ``telemetry_core.windows.PARTITION_FMT`` (``2026-11-20-07:15``),
the same format for both grains, so the default ``TimeWindowPartitionMapping`` maps an
hour onto its four quarters. Both grains start at the same instant (the config requires a
whole hour), so the first hour always has its four quarters.
"""

from __future__ import annotations

import dagster as dg

from telemetry_core.timeutil import to_datetime
from telemetry_core.windows import PARTITION_FMT

CRON = {"15m": "*/15 * * * *", "1h": "0 * * * *"}


def build_partitions(start_ns: int) -> dict[str, dg.TimeWindowPartitionsDefinition]:
    """One partitions definition per grain (``15m``, ``1h``), the first window at
    ``start_ns`` (``Config.rollups.start_ns``)."""
    start = to_datetime(start_ns)
    return {
        grain: dg.TimeWindowPartitionsDefinition(
            cron_schedule=cron, start=start, fmt=PARTITION_FMT, timezone="UTC"
        )
        for grain, cron in CRON.items()
    }
