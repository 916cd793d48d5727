"""Window arithmetic: UTC clock-aligned, half-open ``[start, end)`` windows.

A reading at exactly 08:00:00.000 belongs to 08:00-08:15 (seed 000's missing-window bug
came from treating the boundary otherwise). Windows are labelled by their start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from telemetry_core.timeutil import NS, from_datetime, to_datetime

MINUTE_NS = 60 * NS
WINDOW_15M_NS = 15 * MINUTE_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
RESOLUTIONS_NS = {"15m": WINDOW_15M_NS, "1h": HOUR_NS}
# Dagster partition key format shared by the 15-minute and hourly partitions.
PARTITION_FMT = "%Y-%m-%d-%H:%M"


def window_start(t_ns: int, width_ns: int = WINDOW_15M_NS) -> int:
    """Start of the window containing ``t_ns`` (floor division works for negatives too)."""
    return t_ns - t_ns % width_ns


def window_bounds(t_ns: int, width_ns: int = WINDOW_15M_NS) -> tuple[int, int]:
    start = window_start(t_ns, width_ns)
    return start, start + width_ns


def windows_between(start_ns: int, end_ns: int, width_ns: int = WINDOW_15M_NS) -> Iterator[int]:
    """Starts of every window overlapping ``[start_ns, end_ns)``."""
    t = window_start(start_ns, width_ns)
    while t < end_ns:
        yield t
        t += width_ns


def partition_key(window_start_ns: int) -> str:
    return to_datetime(window_start_ns).strftime(PARTITION_FMT)


def parse_partition_key(key: str) -> int:
    return from_datetime(datetime.strptime(key, PARTITION_FMT).replace(tzinfo=UTC))
