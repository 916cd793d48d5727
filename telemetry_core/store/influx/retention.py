"""Retention on InfluxDB: count and delete whole windows of raw points or rollup rows.

What may go is decided by :mod:`telemetry_core.retention`; this module only counts rows
per window (``GROUP BY time()``, the windows aligned to the epoch like ours) and deletes
time ranges. Rollup tombstones (``count = 0``, see :mod:`telemetry_core.store.influx`)
are not counted as rows and go with their window.

Deletes go through the store's writer: ``DELETE FROM ... WHERE time ...`` on ``/query``
for ``influxdb://`` (InfluxDB 1.x; the v1 API of 2.x and 3.x has no DELETE, and the
server then answers with an error that is raised here, naming the alternative), the
delete API for ``influxdb2://``. InfluxDB has no transactions: each window is counted
again right before its delete and skipped if its count moved, which narrows, but cannot
close, the gap a concurrent writer could use. What closes it in practice is that the
ingest daemon refuses points older than ``[retention] raw_days``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from telemetry_core.store.base import StoreError, level_width
from telemetry_core.store.influx.guard import WRITERS
from telemetry_core.store.influx.http import quote_ident
from telemetry_core.store.influx.layout import RAW, Writer, rollup_measurement
from telemetry_core.windows import WINDOW_15M_NS

if TYPE_CHECKING:
    from telemetry_core.store.influx.http import Series

Query = Callable[[str], list]


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
    of consecutive windows goes in one DELETE. Raw deletes also drop the writers'
    heartbeats of those ranges (bookkeeping of the raw write path, see guard.py)."""
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
            raise StoreError(
                f"this InfluxDB server refuses DELETE on its v1 API, so retention cannot "
                f"remove {measurement} windows: use influxdb2:// (delete API) or give the "
                "database a retention period instead"
            )
        if level is None:
            writer.delete(WRITERS, start, end, {})
    return {ws: expected[ws] for ws in same}
