"""Partitions: 15-minute and hourly windows, always in UTC.

Why UTC: a local-time sub-hourly partition key is ambiguous or missing at DST changes;
work hours are a per-site *column* (``is_work_hours``), never a partition dimension, and so
is the site (one partition per site would multiply run overhead by the number of sites).

Keys are window starts in ``telemetry_core.windows.PARTITION_FMT`` (``2026-11-20-07:15``),
the same format for both resolutions, so the default ``TimeWindowPartitionMapping`` maps an
hour onto its four quarters.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from telemetry_core.config import Rollups
from telemetry_core.timeutil import parse_rfc3339, to_datetime
from telemetry_core.windows import PARTITION_FMT

# The first partition. Fixed at import (nothing reads the environment at import time);
# ``[rollups] start`` in the TOML file documents the same default.
PARTITIONS_START: datetime = to_datetime(parse_rfc3339(Rollups.start))

quarter_hour_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/15 * * * *",
    start=PARTITIONS_START,
    fmt=PARTITION_FMT,
    timezone="UTC",
)

hourly_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 * * * *",
    start=PARTITIONS_START,
    fmt=PARTITION_FMT,
    timezone="UTC",
)
