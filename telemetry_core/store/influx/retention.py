"""Retention on InfluxDB: count and delete whole windows of raw points or rollup rows.

What may go is decided by :mod:`telemetry_core.retention`; this module only counts rows
per window (``GROUP BY time()``, the windows aligned to the epoch like ours) and deletes
time ranges. Rollup tombstones (``count = 0``, see :mod:`telemetry_core.store.influx`)
are not counted as rows and go with their window.

Deletes go through the store's writer: on ``influxdb://`` ``DELETE`` on 1.x and
``/api/v2/delete`` on 2.x (``v1.py``); InfluxDB 3.x cannot delete points, which
:func:`check_retention` tells the Dagster code location when it loads (not the daily job
at 03:30); the delete API for ``influxdb2://``. InfluxDB has no transactions: each window is counted
again right before its delete and skipped if its count moved, which narrows, but cannot
close, the gap a concurrent writer could use. What closes it in practice is that the
ingest daemon refuses points older than ``[retention] raw_days``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from telemetry_core.store.base import StoreError, StoreUnavailable, level_width
from telemetry_core.store.influx.http import quote_ident
from telemetry_core.store.influx.layout import RAW, Writer, rollup_measurement
from telemetry_core.windows import WINDOW_15M_NS

if TYPE_CHECKING:
    from telemetry_core.store.influx.http import Series

Query = Callable[[str], list]
log = logging.getLogger(__name__)


def _source(level: str | None) -> tuple[str, str, str, int]:
    """(measurement, counted field, extra condition, window width)."""
    if level is None:
        return RAW, "value", "", WINDOW_15M_NS
    return rollup_measurement(level), "count", ' AND "count" > 0', level_width(level)


def _rows(result: list[Series]) -> list[list]:
    return [row for s in result for row in s.values]


def oldest(query: Query, level: str | None, before_ns: int) -> int | None:
    """Time of the oldest live row before ``before_ns`` (``first()`` over every series)."""
    measurement, counted, live, _ = _source(level)
    (result,) = query(
        f"SELECT first({quote_ident(counted)}) FROM {quote_ident(measurement)} "
        f"WHERE time < {int(before_ns)}{live}"
    )
    rows = _rows(result)
    return min(int(row[0]) for row in rows) if rows else None


def counts(query: Query, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
    """Live rows per window of the level's width in ``[start, end)``."""
    measurement, counted, live, width = _source(level)
    if end_ns <= start_ns:
        return {}
    (result,) = query(
        f"SELECT count({quote_ident(counted)}) FROM {quote_ident(measurement)} "
        f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)}{live} "
        f"GROUP BY time({width}ns) fill(none)"
    )
    return {int(ws): int(n) for ws, n in _rows(result) if n}


def delete(
    query: Query, writer: Writer, level: str | None, expected: Mapping[int, int]
) -> dict[int, int]:
    """Delete each window whose live row count is still ``expected[ws]``; returns the
    rows deleted per window. The windows are counted again in one query, then each run
    of consecutive windows goes in one DELETE."""
    measurement, _, _, width = _source(level)
    if not expected:
        return {}
    lo, hi = min(expected), max(expected) + width
    now = counts(query, level, lo, hi)
    # Windows written meanwhile are no longer the verified ones: left for the next run.
    same = sorted(ws for ws, n in expected.items() if now.get(ws, 0) == n)
    runs: list[list[int]] = []
    for ws in same:
        if runs and runs[-1][1] == ws:
            runs[-1][1] = ws + width
        else:
            runs.append([ws, ws + width])
    for start, end in runs:
        if not writer.delete(measurement, start, end, {}):
            problem = getattr(writer, "retention_problem", lambda: None)()
            raise StoreError(
                problem
                or f"this InfluxDB server refuses DELETE, so retention cannot remove "
                f"{measurement} windows: set [retention] enabled = false and give the "
                "database a retention period instead"
            )
    return {ws: expected[ws] for ws in same}


def check_retention(writer: Writer) -> None:
    """Raise a one-line ``StoreError`` when retention cannot delete on this server (asked
    through ``/ping``); nothing when it can, or when the server does not answer now (the
    job then fails on its own, saying why)."""
    problem_of = getattr(writer, "retention_problem", None)
    if problem_of is None:  # influxdb2://: the delete API, always there
        return
    try:
        problem = problem_of()
    except StoreUnavailable as exc:
        log.warning("cannot ask InfluxDB whether retention can delete there: %s", exc)
        return
    if problem:
        raise StoreError(problem)
