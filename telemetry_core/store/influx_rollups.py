"""Rollup side of the InfluxDB store: server-side raw aggregation and whole-window replace.

Why the aggregation is split in two kinds of InfluxQL statement: with ``GROUP BY time()``
InfluxDB labels ``first()``/``last()`` with the window start, not the point's time, so one
statement computes ``count, sum, min, max, first, last`` for every window and series, and
a ``first()``/``last()`` pair *without* ``GROUP BY time()`` per window returns the real
``first_time``/``last_time``. All statements go to the server in one request; only the
per-series results come back, never the raw points.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from telemetry_core.identifiers import check_field, check_name
from telemetry_core.lineprotocol import check_float_column, encode_frame
from telemetry_core.store.base import ALL, KEY_COLUMNS, ROLLUP_COLUMNS, check_level
from telemetry_core.store.influx_http import quote_ident, quote_str
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, windows_between

if TYPE_CHECKING:
    import polars as pl

    from telemetry_core.store.influx_http import V1Http
    from telemetry_core.store.influx_store import Writer

_VALUE = quote_ident("value")
_ROLLUP_FIELDS = {
    "count": "int", "sum": "float", "min": "float", "max": "float", "first": "float",
    "last": "float", "first_time": "int", "last_time": "int", "is_work_hours": "int",
}  # fmt: skip
_STATEMENTS_PER_REQUEST = 200
_PARALLEL_WINDOWS = 8


def level_width(level: str) -> int:
    return WINDOW_15M_NS if check_level(level).endswith("15m") else HOUR_NS


def rollup_measurement(level: str) -> str:
    return f"rollup_{check_level(level)}"


class RollupMixin:
    _writer: Writer
    _http: V1Http

    def query(self, statements: str) -> list: ...  # provided by InfluxStore

    def _ensure(self) -> None: ...  # provided by InfluxStore

    # -- raw -> partials, computed by the server ---------------------------------------
    def aggregate_raw(
        self, start_ns: int, end_ns: int, width_ns: int, *, site_id: str | None = None
    ) -> pl.DataFrame:
        from telemetry_core.store.influx_frames import PARTIAL_SCHEMA, frame, series_key, sort_keys
        from telemetry_core.store.influx_store import RAW, tag_filters

        start_ns, end_ns, width_ns = int(start_ns), int(end_ns), int(width_ns)
        if width_ns <= 0:
            raise ValueError("window width must be positive")
        site = tag_filters(site_id=site_id)
        raw = quote_ident(RAW)
        stats_query = (
            f"SELECT count({_VALUE}), sum({_VALUE}), min({_VALUE}), max({_VALUE}) FROM {raw} "
            f"WHERE time >= {start_ns} AND time < {end_ns}{site} "
            f"GROUP BY time({width_ns}ns), * fill(none)"
        )
        windows = list(windows_between(start_ns, end_ns, width_ns))
        if len(windows) <= _PARALLEL_WINDOWS:
            # A rollup run: the selectors go on a second connection while the server
            # computes the statistics (InfluxDB runs concurrent requests on other cores).
            self._ensure()  # set-up (database, bucket) before the second connection
            with ThreadPoolExecutor(1) as pool:
                picked = pool.submit(self._selectors, windows, start_ns, end_ns, width_ns, site)
                (stats,) = self.query(stats_query)
                selected = picked.result()
        else:  # a long range: only ask for the selectors of windows that hold data
            (stats,) = self.query(stats_query)
            busy = sorted({row[0] for s in stats for row in s.values if row[1]})
            selected = self._selectors(busy, start_ns, end_ns, width_ns, site)
        rows: dict[tuple, list] = {}
        for s in stats:
            key = series_key(s)
            for ws, n, total, lo, hi in s.values:
                if n:
                    first, last, t0, t1 = selected.get((ws, *key), (None,) * 4)
                    rows[(ws, *key)] = [n, total, lo, hi, first, last, t0, t1]
        names = list(PARTIAL_SCHEMA)
        cols: dict[str, list] = {name: [] for name in names}
        for key, values in rows.items():
            for name, value in zip(names, (*key, *values), strict=True):
                cols[name].append(value)
        return sort_keys(frame(cols, PARTIAL_SCHEMA), "window_start")

    def _selectors(
        self, windows: list[int], start_ns: int, end_ns: int, width_ns: int, site: str
    ) -> dict[tuple, tuple]:
        """First and last point (value and real time) per window and series: ``first()``
        and ``last()`` without ``GROUP BY time()`` keep the point's own timestamp."""
        from telemetry_core.store.influx_frames import series_key
        from telemetry_core.store.influx_store import RAW

        raw = quote_ident(RAW)
        out: dict[tuple, tuple] = {}
        http = self._http.fork()
        try:
            per_request = _STATEMENTS_PER_REQUEST // 2
            for i in range(0, len(windows), per_request):
                chunk = windows[i : i + per_request]
                statements = []
                for ws in chunk:
                    lo, hi = max(ws, start_ns), min(ws + width_ns, end_ns)
                    where = f"WHERE time >= {lo} AND time < {hi}{site} GROUP BY *"
                    statements.append(f"SELECT first({_VALUE}) FROM {raw} {where}")
                    statements.append(f"SELECT last({_VALUE}) FROM {raw} {where}")
                results = http.query("; ".join(statements))
                for j, ws in enumerate(chunk):
                    lasts = {series_key(s): s.values[0] for s in results[2 * j + 1] if s.values}
                    for s in results[2 * j]:
                        key = series_key(s)
                        if s.values and key in lasts:
                            (t0, first), (t1, last) = s.values[0][:2], lasts[key][:2]
                            out[(ws, *key)] = (first, last, t0, t1)
        finally:
            http.close()
        return out

    # -- rollups ---------------------------------------------------------------------
    def replace_rollups(
        self,
        level: str,
        start_ns: int,
        end_ns: int,
        rows: pl.DataFrame,
        *,
        site_id: str | None = None,
    ) -> int:
        import polars as pl

        measurement = rollup_measurement(level)
        start_ns, end_ns = int(start_ns), int(end_ns)
        if site_id is not None:
            check_name(site_id, "site_id")
        data = rows.select(ROLLUP_COLUMNS)
        _check_rows(data, start_ns, end_ns, site_id)
        check_float_column(data, ["sum", "min", "max", "first", "last"])
        data = data.with_columns(
            pl.col("is_work_hours").cast(pl.Int64).fill_null(-1).alias("is_work_hours")
        )
        site_tags = {} if site_id is None else {"site_id": site_id}
        if self._writer.precise_delete:
            self._writer.delete(measurement, start_ns, end_ns, site_tags)
            stale = data.clear()
        else:
            stale = self._tombstones(measurement, start_ns, end_ns, site_id, data)
        body = encode_frame(
            pl.concat([data, stale]),
            measurement,
            tags=KEY_COLUMNS,
            fields=_ROLLUP_FIELDS,
            time="window_start",
        )
        now = time.time_ns()
        from telemetry_core.store.influx_store import ROLLED_UP

        marks = "".join(
            f"{ROLLED_UP},level={level},site_id={site_id or ALL} at={now}i {ws}\n"
            for ws in windows_between(start_ns, end_ns, level_width(level))
        )
        self._writer.write(body + marks)
        return data.height

    def _tombstones(self, measurement, start_ns, end_ns, site_id, data) -> pl.DataFrame:
        """Rows already stored in the range but absent from the new rows are overwritten
        with ``count = 0`` (reads skip them): the v1 API of InfluxDB 2.x and 3.x has no
        DELETE, and this way one code path replaces windows on every generation."""
        import polars as pl

        from telemetry_core.store.influx_frames import series_key
        from telemetry_core.store.influx_store import tag_filters

        (series,) = self.query(
            f'SELECT "count" FROM {quote_ident(measurement)} WHERE time >= {start_ns} '
            f'AND time < {end_ns} AND "count" > 0{tag_filters(site_id=site_id)} GROUP BY *'
        )
        old = {(row[0], *series_key(s)) for s in series for row in s.values}
        new = set(data.select("window_start", *KEY_COLUMNS).iter_rows())
        gone = sorted(old - new)
        if not gone:
            return data.clear()
        cols = list(zip(*gone, strict=True))
        n = len(gone)
        zeros = pl.Series([0.0] * n, dtype=pl.Float64)
        return (
            pl.DataFrame(
                {
                    "window_start": pl.Series(cols[0], dtype=pl.Int64),
                    **{
                        k: pl.Series(c, dtype=pl.String)
                        for k, c in zip(KEY_COLUMNS, cols[1:], strict=True)
                    },
                    "count": pl.Series([0] * n, dtype=pl.Int64),
                    **{k: zeros for k in ("sum", "min", "max", "first", "last")},
                    "first_time": pl.Series([0] * n, dtype=pl.Int64),
                    "last_time": pl.Series([0] * n, dtype=pl.Int64),
                    "is_work_hours": pl.Series([-1] * n, dtype=pl.Int64),
                }
            )
            .select(data.columns)
            .cast(data.schema)
        )

    def read_rollups(
        self, level, start_ns, end_ns, *, measurement=None, field=None, site_id=None, device_id=None
    ) -> pl.DataFrame:
        from telemetry_core.store.influx_frames import ROLLUP_SCHEMA, frame, sort_keys
        from telemetry_core.store.influx_store import tag_filters

        table = rollup_measurement(level)
        where = tag_filters(
            measurement=measurement, site_id=site_id, device_id=device_id, field=field
        )
        fields = ", ".join(quote_ident(f) for f in _ROLLUP_FIELDS)
        group = ", ".join(quote_ident(k) for k in KEY_COLUMNS)
        (series,) = self.query(
            f"SELECT {fields} FROM {quote_ident(table)} WHERE time >= {int(start_ns)} "
            f'AND time < {int(end_ns)} AND "count" > 0{where} GROUP BY {group}'
        )
        cols: dict[str, list] = {name: [] for name in ROLLUP_SCHEMA}
        flags = {1: True, 0: False}
        for s in series:
            idx = [s.columns.index(f) for f in _ROLLUP_FIELDS]
            for row in s.values:
                cols["window_start"].append(row[0])
                for key in KEY_COLUMNS:
                    cols[key].append(s.tags[key])
                for name, i in zip(_ROLLUP_FIELDS, idx, strict=True):
                    value = row[i]
                    cols[name].append(flags.get(value) if name == "is_work_hours" else value)
        return sort_keys(frame(cols, ROLLUP_SCHEMA), "window_start")

    def rolled_up_windows(self, level: str, start_ns: int, end_ns: int) -> list[tuple[int, str]]:
        from telemetry_core.store.influx_store import ROLLED_UP

        (series,) = self.query(
            f'SELECT "at" FROM {quote_ident(ROLLED_UP)} WHERE "level" = '
            f"{quote_str(check_level(level))} AND time >= {int(start_ns)} "
            f'AND time < {int(end_ns)} GROUP BY "site_id"'
        )
        return sorted((row[0], s.tags["site_id"]) for s in series for row in s.values)


def _check_rows(data: pl.DataFrame, start_ns: int, end_ns: int, site_id: str | None) -> None:
    import polars as pl

    if data.height == 0:
        return
    outside = data.filter((pl.col("window_start") < start_ns) | (pl.col("window_start") >= end_ns))
    if outside.height:
        raise ValueError(
            f"rollup row at {outside['window_start'][0]} lies outside the replaced range"
        )
    if site_id is not None:
        other = data.filter(pl.col("site_id") != site_id)
        if other.height:
            raise ValueError(
                f"rollup row of site {other['site_id'][0]!r} in a run scoped to {site_id!r}"
            )
    for m, s, d, f in data.select(KEY_COLUMNS).unique().iter_rows():
        check_name(m, "measurement")
        if s != ALL:
            check_name(s, "site_id")
        if d != ALL:
            check_name(d, "device_id")
        check_field(f)
