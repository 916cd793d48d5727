"""The PostgreSQL store's rollup tables: one per level, text keys, replaced window range by
window range in one transaction (delete, binary ``COPY`` in, rolled-up marks), so a
re-run after late data or a backfill is idempotent and readers never see half a window."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg

from telemetry_core.store.base import (
    ALL,
    KEY_COLUMNS,
    ROLLUP_COLUMNS,
    ROLLUP_SCHEMA,
    check_level,
    rows_to_replace,
)
from telemetry_core.store.postgres.connection import PostgresBase, copy_frame, sql_filters
from telemetry_core.windows import windows_between

if TYPE_CHECKING:
    import polars as pl


class PostgresRollups(PostgresBase):
    def replace_rollups(
        self,
        level: str,
        start_ns: int,
        end_ns: int,
        rows: pl.DataFrame,
        *,
        site_id: str | None = None,
    ) -> int:
        width, data = rows_to_replace(level, start_ns, end_ns, rows, site_id)
        site_clause = " AND site_id = %s" if site_id is not None else ""
        params: list[int | str] = [int(start_ns), int(end_ns)]
        if site_id is not None:
            params.append(site_id)
        starts = list(windows_between(start_ns, end_ns, width))
        table = f"rollup_{level}"  # level checked against ROLLUP_LEVELS above

        def txn(conn: psycopg.Connection[Any]) -> int:
            conn.execute(
                f"DELETE FROM {table} WHERE window_start >= %s AND window_start < %s{site_clause}",
                params,
            )
            if data.height:
                # CSV written by polars (no Python object per value): floats in their
                # shortest form that reads back to the same bits, -0.0, inf and NaN included
                with conn.cursor().copy(
                    f"COPY {table} ({', '.join(ROLLUP_COLUMNS)}) FROM STDIN (FORMAT CSV)"
                ) as copy:
                    copy.write(data.write_csv(include_header=False))
            conn.execute(
                "INSERT INTO rolled_up (level, window_start, site_id, at) "
                "SELECT %s, ws, %s, %s FROM unnest(%s::bigint[]) AS ws "
                "ON CONFLICT (level, window_start, site_id) DO UPDATE SET at = excluded.at",
                (level, site_id or ALL, time.time_ns(), starts),
            )
            return data.height

        return self._write_txn(txn)

    def read_rollups(
        self,
        level: str,
        start_ns: int,
        end_ns: int,
        *,
        measurement: str | None = None,
        field: str | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
    ) -> pl.DataFrame:
        check_level(level)
        where, params = sql_filters(
            "r",
            allow_all=True,
            measurement=measurement,
            field=field,
            site_id=site_id,
            device_id=device_id,
        )
        sql = (
            f"SELECT {', '.join('r.' + c for c in ROLLUP_COLUMNS)} FROM rollup_{level} r "
            f"WHERE r.window_start >= %s AND r.window_start < %s{where} "
            f"ORDER BY r.window_start, {', '.join('r.' + c for c in KEY_COLUMNS)}"
        )
        args = [int(start_ns), int(end_ns), *params]
        return self._run(lambda conn: copy_frame(conn, sql, args, ROLLUP_SCHEMA))

    def rolled_up_windows(self, level: str, start_ns: int, end_ns: int) -> list[tuple[int, str]]:
        check_level(level)
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT window_start, site_id FROM rolled_up WHERE level = %s "
                "AND window_start >= %s AND window_start < %s ORDER BY window_start, site_id",
                (level, int(start_ns), int(end_ns)),
            ).fetchall()
        )
        return [(int(ws), site) for ws, site in rows]
