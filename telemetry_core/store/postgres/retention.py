"""The PostgreSQL store's retention primitives: ``telemetry_core.retention`` decides what
goes; these find, count and delete, window by window, each delete only if the window still
holds exactly the rows that were verified.

Raw points live in day partitions, so retention drops or empties whole partitions: when
every row of a day is in windows being deleted, with their verified counts, the day's
table is dropped (instant, no dead tuples, no vacuum debt); otherwise the windows' rows
are deleted one short transaction per window.

Locks, and why no deadlock: dropping a partition needs ``raw`` exclusively for an instant,
so that path locks ``ONLY raw`` first (every writer and reader goes through ``raw`` before
its partitions: the same order), counts again under the lock and drops. A window delete
locks just its partition against writers (``SHARE ROW EXCLUSIVE``) while it counts and
deletes. A drop that cannot have ``raw`` within ``DROP_LOCK_TIMEOUT`` deletes the rows
instead; a window delete gives up after the session's ``lock_timeout`` (an outage: the
next run retries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from telemetry_core.store.base import StoreUnavailable, retention_table
from telemetry_core.store.postgres.connection import PostgresBase
from telemetry_core.store.postgres.schema import partition_name
from telemetry_core.windows import DAY_NS, WINDOW_15M_NS

DROP_LOCK_TIMEOUT = "2s"


def _bucket(col: str) -> str:
    """The window start of ``col`` for width ``%(w)s``, floor semantics."""
    return f"{col} - (({col} %% %(w)s + %(w)s) %% %(w)s)"


class PostgresRetention(PostgresBase):
    def retention_oldest(self, level: str | None, before_ns: int) -> int | None:
        table, col, _ = retention_table(level)
        before = int(before_ns)

        def oldest(conn: psycopg.Connection[Any]) -> int | None:
            if level is not None:  # the primary key starts with window_start: an index probe
                row = conn.execute(
                    f"SELECT min({col}) FROM {table} WHERE {col} < %s", (before,)
                ).fetchone()
                return None if row is None or row[0] is None else int(row[0])
            # raw: the oldest day partition that holds a row, scanned alone
            for day, name in sorted(self.partitions.existing(conn).items()):
                if day * DAY_NS >= before:
                    break
                row = conn.execute(
                    f"SELECT min(time) FROM {name} WHERE time < %s", (before,)
                ).fetchone()
                if row is not None and row[0] is not None:
                    return int(row[0])
            return None

        return self._run(oldest)

    def retention_counts(self, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        table, col, width = retention_table(level)
        sql = (
            f"SELECT {_bucket(col)} AS ws, count(*) FROM {table} "
            f"WHERE {col} >= %(a)s AND {col} < %(b)s GROUP BY 1"
        )
        args = {"w": width, "a": int(start_ns), "b": int(end_ns)}
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall())
        return {int(ws): int(n) for ws, n in rows}

    def retention_delete(self, level: str | None, expected: Mapping[int, int]) -> dict[int, int]:
        table, col, width = retention_table(level)
        wanted = {int(ws): int(n) for ws, n in expected.items()}
        deleted: dict[int, int] = {}
        if level is None:
            by_day: dict[int, dict[int, int]] = {}
            for ws, n in wanted.items():
                by_day.setdefault(ws // DAY_NS, {})[ws] = n
            days = self._run(self.partitions.existing)
            for day, windows in sorted(by_day.items()):
                if day not in days:
                    continue  # nothing stored that day: no window can still match
                dropped = self._drop_day(day, windows)
                if dropped:
                    deleted.update(dropped)
                else:
                    deleted.update(self._delete_windows(days[day], col, width, windows))
            return deleted
        return self._delete_windows(table, col, width, wanted)

    def _day_counts(self, conn: psycopg.Connection[Any], name: str) -> dict[int, int]:
        rows = conn.execute(
            f"SELECT {_bucket('time')}, count(*) FROM {name} GROUP BY 1", {"w": WINDOW_15M_NS}
        ).fetchall()
        return {int(ws): int(n) for ws, n in rows}

    def _drop_day(self, day: int, windows: dict[int, int]) -> dict[int, int] | None:
        """Drop the day's partition if its rows are exactly ``windows`` (window -> count);
        None (nothing done) otherwise."""
        name = partition_name(day)
        if self._run(lambda conn: self._day_counts(conn, name)) != windows:
            return None  # other windows, or other counts: window by window instead

        def txn(conn: psycopg.Connection[Any]) -> dict[int, int] | None:
            # while this waits, writers queue behind it: wait briefly, else delete rows
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (DROP_LOCK_TIMEOUT,))
            conn.execute("LOCK TABLE ONLY raw IN ACCESS EXCLUSIVE MODE")
            if self._day_counts(conn, name) != windows:
                return None  # written since the check above
            conn.execute(f"DROP TABLE {name}")
            return dict(windows)

        try:
            dropped = self._write_txn(txn)
        except StoreUnavailable:
            return None  # busy (or gone: the window deletes will say so)
        if dropped is not None:
            self.partitions.forget(day)
        return dropped

    def _delete_windows(
        self, table: str, col: str, width: int, windows: Mapping[int, int]
    ) -> dict[int, int]:
        """One short transaction per window: its rows counted again under a lock that
        keeps writers out, and deleted only if the count is still the verified one."""
        where = f"FROM {table} WHERE {col} >= %s AND {col} < %s"

        def window_txn(ws: int, count: int) -> int:
            def txn(conn: psycopg.Connection[Any]) -> int:
                conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
                row = conn.execute(f"SELECT count(*) {where}", (ws, ws + width)).fetchone()
                if row is None or row[0] != count:
                    return -1  # written since it was counted: left alone
                return conn.execute(f"DELETE {where}", (ws, ws + width)).rowcount

            return self._write_txn(txn)

        deleted: dict[int, int] = {}
        for ws, count in sorted(windows.items()):
            n = window_txn(ws, count)
            if n >= 0:
                deleted[ws] = n
        return deleted
