"""Late windows on PostgreSQL: marked by the write that brings their late points (in its
transaction), listed newest first, cleared by the late-data sensor once re-rolled up.

Both sides lock marks in key order (the marks in ``(window_start, site_id)`` order, the
clear with ``FOR UPDATE`` in the same order before deleting): a daemon marking while the
sensor clears waits for it, never deadlocks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from telemetry_core.store.base import LateWindow, late_keys
from telemetry_core.store.postgres.connection import PostgresBase

_MARK_LATE = """
    INSERT INTO late_windows AS w
    SELECT ws, site, n, %s, %s FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS x(ws, site, n)
    ON CONFLICT (window_start, site_id) DO UPDATE
    SET points = w.points + excluded.points, last_marked_at = excluded.last_marked_at"""


class PostgresLate(PostgresBase):
    def _late(
        self, conn: psycopg.Connection[Any], counts: dict[tuple[int, str], int], cutoff: int | None
    ) -> tuple[tuple[int, str], ...]:
        """Windows of this batch that end at or before ``cutoff`` or were already rolled
        up (for their site or for all sites), marked late: points add up per window."""
        starts = sorted({ws for ws, _ in counts})
        done = {
            (int(ws), site)
            for ws, site in conn.execute(
                "SELECT window_start, site_id FROM rolled_up "
                "WHERE level = '15m' AND window_start = ANY(%s)",
                (starts,),
            ).fetchall()
        }
        late = late_keys(counts, cutoff, done)
        if late:
            now = time.time_ns()
            conn.execute(
                _MARK_LATE,
                (now, now, [ws for ws, _ in late], [s for _, s in late], [counts[k] for k in late]),
            )
        return tuple(late)

    def late_windows(self, limit: int = 100) -> list[LateWindow]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT window_start, site_id, points, last_marked_at FROM late_windows "
                "ORDER BY window_start DESC, site_id LIMIT %s",
                (int(limit),),
            ).fetchall()
        )
        return [LateWindow(int(ws), site, int(n), int(at)) for ws, site, n, at in rows]

    def clear_late_windows(self, windows: Sequence[tuple[int, str]], marked_up_to_ns: int) -> int:
        if not windows:
            return 0
        starts = [int(ws) for ws, _ in windows]
        sites = [site for _, site in windows]

        def txn(conn: psycopg.Connection[Any]) -> int:
            # rows locked in key order first, as writers marking windows lock them: a
            # clear racing a daemon's marks waits, never deadlocks
            conn.execute(
                "SELECT 1 FROM late_windows w JOIN unnest(%s::bigint[], %s::text[]) AS x(ws, site) "
                "ON w.window_start = x.ws AND w.site_id = x.site "
                "ORDER BY w.window_start, w.site_id FOR UPDATE OF w",
                (starts, sites),
            )
            cur = conn.execute(
                "DELETE FROM late_windows w USING unnest(%s::bigint[], %s::text[]) AS x(ws, site) "
                "WHERE w.window_start = x.ws AND w.site_id = x.site AND w.last_marked_at <= %s",
                (starts, sites, int(marked_up_to_ns)),
            )
            return cur.rowcount

        return self._write_txn(txn)
