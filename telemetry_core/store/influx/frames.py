"""InfluxQL results -> polars frames with exactly the SQLite store's column names and dtypes.

Kept apart from the store so the daemon's write path (which never reads frames) does not
pay for polars: everything here imports it lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry_core.store.base import KEY_COLUMNS, PARTIAL_SCHEMA, RAW_SCHEMA, ROLLUP_SCHEMA
from telemetry_core.store.influx.http import Series

__all__ = ["PARTIAL_SCHEMA", "RAW_SCHEMA", "ROLLUP_SCHEMA"]

if TYPE_CHECKING:
    import polars as pl

_FLOATS = frozenset(("value", "sum", "min", "max", "first", "last"))


def frame(columns: dict[str, list], schema: dict[str, str]) -> pl.DataFrame:
    import polars as pl

    data = {}
    for name, dtype in schema.items():
        values = columns.get(name, [])
        if name in _FLOATS:
            # JSON writes a float with no fraction as an integer (7.0 -> 7).
            values = [None if v is None else float(v) for v in values]
        data[name] = pl.Series(name, values, dtype=getattr(pl, dtype))
    return pl.DataFrame(data)


def sort_keys(df: pl.DataFrame, time_col: str) -> pl.DataFrame:
    return df.sort([time_col, *KEY_COLUMNS])


def raw_frame(series: list[Series]) -> pl.DataFrame:
    """``SELECT "value" ... GROUP BY *`` -> tall raw points, ordered like SQLite's."""
    cols: dict[str, list] = {name: [] for name in RAW_SCHEMA}
    for s in series:
        n = len(s.values)
        ti, vi = s.columns.index("time"), s.columns.index("value")
        cols["time"].extend(row[ti] for row in s.values)
        cols["value"].extend(row[vi] for row in s.values)
        for key in KEY_COLUMNS:
            cols[key].extend([s.tags[key]] * n)
    return sort_keys(frame(cols, RAW_SCHEMA), "time")


def series_key(s: Series) -> tuple[str, str, str, str]:
    return (s.tags["measurement"], s.tags["site_id"], s.tags["device_id"], s.tags["field"])
