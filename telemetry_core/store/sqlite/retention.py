"""The SQLite store's retention primitives: ``telemetry_core.retention`` decides what goes;
these find, count and delete, one short transaction per window."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping

from telemetry_core.store.base import retention_table
from telemetry_core.store.sqlite.base import SqliteBase


class SqliteRetention(SqliteBase):
    def retention_oldest(self, level: str | None, before_ns: int) -> int | None:
        table, col, _ = retention_table(level)
        with self._lock, self._translate():
            (oldest,) = self._conn.execute(
                f"SELECT min({col}) FROM {table} WHERE {col} < ?", (int(before_ns),)
            ).fetchone()
        return None if oldest is None else int(oldest)

    def retention_counts(self, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        table, col, width = retention_table(level)
        sql = (
            f"SELECT {col} - ({col} % ?) AS ws, count(*) FROM {table} "
            f"WHERE {col} >= ? AND {col} < ? GROUP BY ws"
        )
        with self._lock, self._translate():
            rows = self._conn.execute(sql, (width, int(start_ns), int(end_ns))).fetchall()
        return {int(ws): int(n) for ws, n in rows}

    def retention_delete(self, level: str | None, expected: Mapping[int, int]) -> dict[int, int]:
        """One short transaction per window (the daemon's writes wait milliseconds, not
        the whole run): the window's rows are counted again inside it and deleted only if
        the count is still the verified one."""
        table, col, width = retention_table(level)
        where = f"FROM {table} WHERE {col} >= ? AND {col} < ?"

        def window_txn(bounds: tuple[int, int], count: int) -> Callable[[sqlite3.Connection], int]:
            def txn(conn: sqlite3.Connection) -> int:
                (now,) = conn.execute(f"SELECT count(*) {where}", bounds).fetchone()
                if now != count:
                    return -1  # written since it was counted: left alone
                return int(conn.execute(f"DELETE {where}", bounds).rowcount)

            return txn

        deleted: dict[int, int] = {}
        for ws, count in sorted(expected.items()):
            n = self._write_txn(window_txn((int(ws), int(ws) + width), count))
            if n >= 0:
                deleted[ws] = n
        return deleted
