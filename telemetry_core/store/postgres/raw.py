"""Raw points on PostgreSQL: the store itself (late marks, rollups and retention are its
parts in ``late.py``, ``rollups.py`` and ``retention.py``).

How a batch is written, in one transaction:

1. new series get their ids (``INSERT ... ON CONFLICT DO NOTHING`` in key order, then a
   select: two writers adding the same series wait for each other, never fail);
2. the windows that came late are marked (``late.py``);
3. the points, by one of two paths:

   * the append (fast path): binary ``COPY`` straight into ``raw`` inside a savepoint.
     New points, the daemon's usual batch, are then written once, with no staging table
     and no merge: 5,000-point batches at 290-300k points/s against 185-190k for the merge
     (same run, load 0.9), and half the server CPU per point. Any identity already stored
     or twice in the batch fails the primary key, and a wait on another writer's row fails
     the savepoint's own 50 ms lock timeout: the savepoint is rolled back (nothing of it
     stays visible; the rows it wrote are dead tuples for vacuum) and the merge runs
     instead, as do the next 16 batches (a redelivery comes in runs);
   * the merge: the points go into a temporary staging table by binary ``COPY``, then one
     ``INSERT ... SELECT DISTINCT ON (series_id, time) ... ORDER BY series_id, time, seq
     DESC, ord DESC ON CONFLICT DO UPDATE ... WHERE`` merges them. ``DISTINCT ON`` keeps one
     row per identity (the highest sequence, on a tie the later point of the call; without
     it a key twice in one batch fails the statement), and the ``ORDER BY`` takes row
     locks in key order in every writer, so two daemons never deadlock.

   Both give the same table: the append succeeds only when every point is new and unique,
   exactly when the merge would insert them all.

The upsert condition is the stream order of the contract: a point replaces the stored one
when its sequence is not lower. An equal sequence replaces too (writes from outside the
stream all carry 0 and the later one wins), but only when the value differs bit for bit
(``float8send``; ``=`` would call -0.0 and 0.0 equal): an exact redelivery, the common
case after a daemon restart, then updates nothing and leaves no dead tuple behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import psycopg

from telemetry_core.identifiers import check_series_key
from telemetry_core.store.base import (
    KEY_COLUMNS,
    PARTIAL_SCHEMA,
    RAW_SCHEMA,
    Point,
    StoreRefused,
    WriteResult,
)
from telemetry_core.store.postgres.connection import copy_frame, sql_filters
from telemetry_core.store.postgres.late import PostgresLate
from telemetry_core.store.postgres.retention import PostgresRetention
from telemetry_core.store.postgres.rollups import PostgresRollups
from telemetry_core.store.postgres.schema import INT64_MAX, INT64_MIN, STAGE
from telemetry_core.store.urls import redact_url
from telemetry_core.windows import DAY_NS, WINDOW_15M_NS

if TYPE_CHECKING:
    import polars as pl

SeriesKey = tuple[str, str, str, str]
_KEY, _SITE, _TIME, _VALUE = itemgetter(0, 1, 2, 3), itemgetter(1), itemgetter(4), itemgetter(5)
_SCAN_BLOCK = 200_000  # rows per fetch in scan_points
_COPY = "COPY raw_stage (ord, series_id, time, value, seq) FROM STDIN (FORMAT BINARY)"
_APPEND = "COPY raw (series_id, time, value, seq) FROM STDIN (FORMAT BINARY)"
# The append's own lock timeout (SET LOCAL in its savepoint): a wait means another
# transaction is writing the same identity, and the merge handles that properly.
_APPEND_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '50ms'"
_MERGE_AFTER_CONFLICT = 16  # after an append that met stored points: merge this many batches
_MERGE = """
    INSERT INTO raw AS r (series_id, time, value, seq)
    SELECT DISTINCT ON (series_id, time) series_id, time, value, seq FROM raw_stage
    ORDER BY series_id, time, seq DESC, ord DESC
    ON CONFLICT (series_id, time) DO UPDATE SET value = excluded.value, seq = excluded.seq
    WHERE excluded.seq > r.seq
       OR (excluded.seq = r.seq AND float8send(excluded.value) <> float8send(r.value))"""
_NEW_SERIES = """
    INSERT INTO series (measurement, site_id, device_id, field)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
    ON CONFLICT DO NOTHING"""
# One row per window and series, in one pass: first and last are the min and max of a
# float8 array [time's high 32 bits, time's low 32 bits, value]. Both halves are exact in a
# float8, arrays compare element by element, and a series has one point per time, so the
# value never decides: the array of the earliest (latest) point wins, value bit for bit
# (-0.0 and NaN included). Measured on the reference week: the join back on min/max time
# it replaces cost more than the aggregation itself (see the package docstring).
_AGG_ROW = """SELECT r.time - ((r.time %% %(w)s + %(w)s) %% %(w)s) AS ws, r.series_id AS sid,
    count(*) AS n, sum(r.value) AS total, min(r.value) AS lo, max(r.value) AS hi,
    min(ARRAY[(r.time >> 32)::float8, (r.time & 4294967295)::float8, r.value]) AS f,
    max(ARRAY[(r.time >> 32)::float8, (r.time & 4294967295)::float8, r.value]) AS l"""
# Per transaction, for aggregate_raw only: JIT compiling this plan took 1.4 s of a 7 s week
# (the server default jit = on); the hash tables of a day's windows (~20 MB per 40,000
# series-windows) must not spill at the default 4 MB; where one GROUP BY covers several
# days, partitions are aggregated one by one.
_AGG_SETTINGS = (
    "SET LOCAL jit = off",
    "SET LOCAL work_mem = '64MB'",
    "SET LOCAL enable_partitionwise_aggregate = on",
)
_MAX_DAY_BRANCHES = 62  # one GROUP BY per day up to two months; beyond, one over the range
_SERIES_IDS = """
    SELECT s.id, s.measurement, s.site_id, s.device_id, s.field FROM series s
    JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(m, si, d, f)
      ON s.measurement = k.m AND s.site_id = k.si AND s.device_id = k.d AND s.field = k.f"""


def _columns(keys: Sequence[SeriesKey]) -> list[list[str]]:
    return [list(col) for col in zip(*keys, strict=True)] if keys else [[], [], [], []]


class PostgresStore(PostgresLate, PostgresRollups, PostgresRetention):
    """The store: raw points and late marks here; rollups and retention in their parts."""

    _staged_conn: object = None  # the connection whose session has the staging table
    _merge_next = 0  # batches to merge without trying the fast path (after a conflict)

    def _series_ids(
        self, conn: psycopg.Connection[Any], fresh: Sequence[SeriesKey]
    ) -> dict[SeriesKey, int]:
        keys = sorted(fresh)  # key order: concurrent writers lock new series in one order
        conn.execute(_NEW_SERIES, _columns(keys))
        rows = conn.execute(_SERIES_IDS, _columns(keys)).fetchall()
        return {(m, s, d, f): int(sid) for sid, m, s, d, f in rows}

    def _append(
        self, conn: psycopg.Connection[Any], rows: list[tuple[int, int, float, int]]
    ) -> bool:
        """The fast path: the rows straight into ``raw`` by binary ``COPY``, in a savepoint;
        False (nothing written) if any identity is already stored, twice in the batch, or
        being written by another transaction (a wait past ``_APPEND_LOCK_TIMEOUT``: the
        merge then waits in key order instead, so writers never deadlock)."""
        try:
            with conn.transaction():  # a savepoint: its SET LOCAL ends with it on failure
                conn.execute(_APPEND_LOCK_TIMEOUT)
                with conn.cursor().copy(_APPEND) as copy:
                    copy.set_types(["int4", "int8", "float8", "int8"])
                    for row in rows:
                        copy.write_row(row)
        except (
            psycopg.errors.UniqueViolation,
            psycopg.errors.LockNotAvailable,
            psycopg.errors.DeadlockDetected,
        ):
            return False
        return True

    def _merge(
        self, conn: psycopg.Connection[Any], rows: list[tuple[int, int, float, int]]
    ) -> None:
        """The upsert: the rows into the staging table, then one merge (module docstring)."""
        with conn.cursor().copy(_COPY) as copy:
            copy.set_types(["int4", "int4", "int8", "float8", "int8"])
            for i, row in enumerate(rows):
                copy.write_row((i, *row))
        conn.execute(_MERGE)

    # -- raw points ------------------------------------------------------------------
    def write_points(
        self,
        points: Sequence[Point],
        *,
        seqs: Sequence[int] | None = None,
        late_cutoff_ns: int | None = None,
    ) -> WriteResult:
        if not points:
            return WriteResult(0)
        if seqs is not None and len(seqs) != len(points):
            raise ValueError(f"{len(seqs)} sequences for {len(points)} points")
        cache = self._series
        # Before any query, a bad name never reaches the database and a time PostgreSQL
        # cannot hold makes no partition. Column-wise with C-level helpers: this runs on the
        # daemon's writer thread, whose every microsecond of GIL the event loop waits for
        # (a per-point loop cost 3 ms of a 5,000-point batch, this 1.3 ms).
        keys: list[SeriesKey] = list(map(_KEY, points))
        found = list(map(cache.get, keys))
        fresh: dict[SeriesKey, None] = {}
        if None in found:
            for key, sid in zip(keys, found, strict=True):
                if sid is None and key not in fresh:
                    check_series_key(key)
                    fresh[key] = None
        times: list[int] = list(map(_TIME, points))
        if min(times) < INT64_MIN or max(times) > INT64_MAX:
            raise StoreRefused(  # before any partition is made for a day it cannot hold
                f"postgresql {redact_url(self.url)} refused the data: a time outside the "
                "int64 nanoseconds PostgreSQL stores (1677-09-21 to 2262-04-11)"
            )
        counts = Counter(
            zip([t - t % WINDOW_15M_NS for t in times], map(_SITE, points), strict=True)
        )
        days = {ws // DAY_NS for ws, _ in counts}  # a window lies inside one day
        stream_seqs = repeat(0) if seqs is None else seqs

        def txn(conn: psycopg.Connection[Any]) -> tuple[tuple[int, str], ...]:
            ids = dict(cache)
            if fresh:
                ids.update(self._series_ids(conn, list(fresh)))
            sids: list[Any] = [ids[k] for k in keys] if fresh else found
            rows = list(zip(sids, times, map(_VALUE, points), stream_seqs))  # noqa: B905
            # the late marks first, the points last: the fast path's short lock timeout
            # (below) then covers nothing else, and every writer locks in the same order
            late = self._late(conn, counts, late_cutoff_ns)
            if self._merge_next > 0:
                self._merge_next -= 1
                self._merge(conn, rows)
            elif not self._append(conn, rows):
                self._merge_next = _MERGE_AFTER_CONFLICT
                self._merge(conn, rows)
            cache.update({k: ids[k] for k in fresh})
            return late

        with self._lock, self._translate():
            for attempt in (1, 2):
                conn = self._connection()
                if self._staged_conn is not conn:
                    conn.execute(STAGE)
                    self._staged_conn = conn
                self.partitions.ensure(conn, days)
                try:
                    with conn.transaction():
                        late = txn(conn)
                    return WriteResult(len(points), late)
                except psycopg.errors.CheckViolation:
                    # "no partition for the row": retention dropped a day this process
                    # still thought present. Ask the catalog again, once.
                    self.partitions.forget()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def read_points(
        self,
        start_ns: int,
        end_ns: int,
        *,
        measurement: str | None = None,
        field: str | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
    ) -> pl.DataFrame:
        where, params = sql_filters(
            "s", measurement=measurement, field=field, site_id=site_id, device_id=device_id
        )
        sql = (
            "SELECT r.time, s.measurement, s.site_id, s.device_id, s.field, r.value "
            "FROM raw r JOIN series s ON s.id = r.series_id "
            f"WHERE r.time >= %s AND r.time < %s{where} "
            "ORDER BY r.time, s.measurement, s.site_id, s.device_id, s.field"
        )
        args = [int(start_ns), int(end_ns), *params]
        return self._run(lambda conn: copy_frame(conn, sql, args, RAW_SCHEMA))

    def scan_points(self, start_ns: int, end_ns: int) -> pl.DataFrame:
        """Every raw point in ``[start, end)``, columns as :meth:`read_points`, in no
        promised order: no ``ORDER BY`` and no join in SQL, rows fetched in binary blocks
        straight into frames, series names joined in polars."""
        import polars as pl

        schema = {"time": pl.Int64, "series_id": pl.Int64, "value": pl.Float64}

        def scan(conn: psycopg.Connection[Any]) -> tuple[list[pl.DataFrame], list[Any]]:
            blocks = [pl.DataFrame(schema=schema)]
            with conn.transaction(), conn.cursor(binary=True) as cur:
                cur.execute(
                    "SELECT time, series_id, value FROM raw WHERE time >= %s AND time < %s",
                    (int(start_ns), int(end_ns)),
                )
                while rows := cur.fetchmany(_SCAN_BLOCK):
                    blocks.append(pl.DataFrame(rows, schema=schema, orient="row"))
                # in the same snapshot: every series id read above is there
                series = cur.execute(
                    "SELECT id, measurement, site_id, device_id, field FROM series"
                ).fetchall()
            return blocks, series

        blocks, series = self._run(scan)
        names = pl.DataFrame(
            series,
            schema={"series_id": pl.Int64, **{c: pl.String for c in KEY_COLUMNS}},
            orient="row",
        )
        points = pl.concat(blocks).join(names, on="series_id", how="left")
        return points.select(list(RAW_SCHEMA))

    def recount_raw(self, start_ns: int, end_ns: int, width_ns: int) -> pl.DataFrame:
        """The points read back in binary blocks and recomputed in polars, apart from the
        SQL aggregation of ``aggregate_raw``."""
        from telemetry_core.rollup import recount_from_points

        return recount_from_points(self, start_ns, end_ns, width_ns)

    def aggregate_raw(
        self, start_ns: int, end_ns: int, width_ns: int, *, site_id: str | None = None
    ) -> pl.DataFrame:
        """Partials computed in the database in one pass over raw (see ``_AGG_ROW``), one
        ``GROUP BY`` per UTC day (one partition each) when windows never straddle a day,
        fetched through ``copy_frame``, rows sorted in polars."""
        width = int(width_ns)
        a, b = int(start_ns), int(end_ns)
        args: dict[str, int | str] = {"w": width}
        where = ""
        if site_id is not None:
            sql_filters("s", site_id=site_id)  # validates the name
            where = " AND r.series_id IN (SELECT id FROM series WHERE site_id = %(site)s)"
            args["site"] = site_id
        ranges = [(a, b)]
        first_day, last_day = a // DAY_NS, (b - 1) // DAY_NS
        if DAY_NS % width == 0 and 1 <= last_day - first_day + 1 <= _MAX_DAY_BRANCHES:
            ranges = [
                (max(a, d * DAY_NS), min(b, (d + 1) * DAY_NS))
                for d in range(first_day, last_day + 1)
            ]
        branches = []
        for i, (lo, hi) in enumerate(ranges):
            args[f"a{i}"], args[f"b{i}"] = lo, hi
            branches.append(
                f"{_AGG_ROW} FROM raw r WHERE r.time >= %(a{i})s AND r.time < %(b{i})s{where}"
                " GROUP BY 1, 2"
            )
        sql = (
            "SELECT ws, s.measurement, s.site_id, s.device_id, s.field, n, total, lo, hi, "
            "f[3], l[3], (f[1]::bigint << 32) | f[2]::bigint, (l[1]::bigint << 32) | l[2]::bigint "
            f"FROM ({' UNION ALL '.join(branches)}) q JOIN series s ON s.id = q.sid"
        )
        frame = self._run(lambda conn: copy_frame(conn, sql, args, PARTIAL_SCHEMA, _AGG_SETTINGS))
        return frame.sort(["window_start", *KEY_COLUMNS])
