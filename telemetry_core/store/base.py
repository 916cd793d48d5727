"""The store protocol every backend implements (one contract test suite checks them all).

Writes take plain tuples so the daemon never imports polars; reads return polars frames
for the rollup maths. Times are int nanoseconds, windows half-open ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

if TYPE_CHECKING:
    import polars as pl

# (measurement, site_id, device_id, field, time_ns, value)
Point = tuple[str, str, str, str, int, float]

RAW_COLUMNS = ("time", "measurement", "site_id", "device_id", "field", "value")
KEY_COLUMNS = ("measurement", "site_id", "device_id", "field")
PARTIAL_COLUMNS = ("count", "sum", "min", "max", "first", "last", "first_time", "last_time")
ROLLUP_COLUMNS = ("window_start", *KEY_COLUMNS, *PARTIAL_COLUMNS, "is_work_hours")
# Column dtypes (polars type names, so this module needs no polars) of the frames every
# store returns: read_points, aggregate_raw, read_rollups.
RAW_SCHEMA = {
    "time": "Int64", "measurement": "String", "site_id": "String",
    "device_id": "String", "field": "String", "value": "Float64",
}  # fmt: skip
PARTIAL_SCHEMA = {
    "window_start": "Int64", "measurement": "String", "site_id": "String",
    "device_id": "String", "field": "String", "count": "Int64", "sum": "Float64",
    "min": "Float64", "max": "Float64", "first": "Float64", "last": "Float64",
    "first_time": "Int64", "last_time": "Int64",
}  # fmt: skip
ROLLUP_SCHEMA = {**PARTIAL_SCHEMA, "is_work_hours": "Boolean"}
# Rollup levels a store keeps: resolution x scope. Site rows have device_id "*"; portfolio
# rows have site_id and device_id "*".
ROLLUP_LEVELS = ("15m", "1h", "site_15m", "site_1h", "portfolio_15m", "portfolio_1h")
ALL = "*"


class StoreError(ValueError):
    """A store URL that cannot work (wrong scheme, missing path, missing credentials)."""


class StoreUnavailable(RuntimeError):
    """The store cannot take writes right now (retry later; never drop the data)."""


class StoreRefused(Exception):
    """The store states that it will not take these points, now or later (an InfluxDB
    field-type conflict, a value PostgreSQL cannot hold). The one exception every backend
    raises for a refusal: the daemon dead-letters the refused messages on it, and treats
    anything else that a write raises as a fault (a bug), never as bad data."""


@dataclass(frozen=True)
class LateWindow:
    window_start: int
    site_id: str
    points: int
    last_marked_at: int


@dataclass(frozen=True)
class WriteResult:
    points: int
    late_windows: tuple[tuple[int, str], ...] = ()  # (window_start, site_id) newly marked


def sql_filters(
    alias: str, *, mark: str, allow_all: bool = False, **kw: str | None
) -> tuple[str, list[str]]:
    """`` AND alias.key = <mark>`` clauses and their parameters for the keys given (not
    None), for backends with SQL (``mark`` is the driver's placeholder). Every value is
    checked as an identifier first; ``*`` names the site/portfolio rows of rollups, so
    rollup reads may ask for it."""
    from telemetry_core.identifiers import check_field, check_name

    clauses, params = [], []
    for key, value in kw.items():
        if value is not None:
            if not (allow_all and value == ALL):
                (check_field if key == "field" else check_name)(value, key)
            clauses.append(f"{alias}.{key} = {mark}")  # key is a fixed column name
            params.append(value)
    return "".join(f" AND {c}" for c in clauses), params


def retention_table(level: str | None) -> tuple[str, str, int]:
    """(table, time column, window width) of raw points (level None) or a rollup level, in
    the SQL backends' layout."""
    if level is None:
        return "raw", "time", WINDOW_15M_NS
    return f"rollup_{check_level(level)}", "window_start", level_width(level)


MAX_WINDOWS_PER_REPLACE = 200_000  # ~5.7 years of 15-minute windows: a bigger range is a bug


def rows_to_replace(
    level: str, start_ns: int, end_ns: int, rows: pl.DataFrame, site_id: str | None
) -> tuple[int, pl.DataFrame]:
    """(window width, the rows in ``ROLLUP_COLUMNS`` order) for ``replace_rollups``, after
    the checks every backend makes: a known level, every row inside ``[start, end)`` and of
    the scoped site, and a range no larger than ``MAX_WINDOWS_PER_REPLACE`` windows."""
    import polars as pl

    width = level_width(level)
    if (end_ns - start_ns) // width > MAX_WINDOWS_PER_REPLACE:
        raise ValueError(
            f"replacing {(end_ns - start_ns) // width} windows at once: split the range"
            f" (at most {MAX_WINDOWS_PER_REPLACE})"
        )
    if not rows.height:
        return width, pl.DataFrame(
            schema={c: getattr(pl, ROLLUP_SCHEMA[c]) for c in ROLLUP_COLUMNS}
        )
    data = rows.select(ROLLUP_COLUMNS)
    ws = pl.col("window_start")
    outside = data.filter((ws < start_ns) | (ws >= end_ns))
    if outside.height:
        raise ValueError(
            f"rollup row at {outside['window_start'][0]} lies outside the replaced range"
        )
    if site_id is not None and (other := data.filter(pl.col("site_id") != site_id)).height:
        raise ValueError(
            f"rollup row of site {other['site_id'][0]!r} in a run scoped to {site_id!r}"
        )
    return width, data


def late_keys(
    counts: Mapping[tuple[int, str], int], cutoff_ns: int | None, rolled_up: set[tuple[int, str]]
) -> list[tuple[int, str]]:
    """The (window start, site) keys of a write that are late, sorted: the window ended at
    or before ``cutoff_ns``, or it was already rolled up for its site or for all sites
    (``rolled_up`` holds (window start, site or ``*``) of the level ``15m``)."""
    return sorted(
        key
        for key in counts
        if (cutoff_ns is not None and key[0] + WINDOW_15M_NS <= cutoff_ns)
        or (key[0], ALL) in rolled_up
        or key in rolled_up
    )


def check_level(level: str) -> str:
    if level not in ROLLUP_LEVELS:
        raise ValueError(f"unknown rollup level {level!r} (one of {', '.join(ROLLUP_LEVELS)})")
    return level


def level_width(level: str) -> int:
    """Window width of a rollup level in ns: 15 minutes for ``*15m``, an hour for ``*1h``."""
    return WINDOW_15M_NS if check_level(level).endswith("15m") else HOUR_NS


@runtime_checkable
class Store(Protocol):
    url: str

    def write_points(
        self,
        points: Sequence[Point],
        *,
        seqs: Sequence[int] | None = None,
        late_cutoff_ns: int | None = None,
    ) -> WriteResult:
        """Upsert by identity in one commit, last write in *stream order* wins.

        ``seqs`` runs parallel to ``points``: the JetStream stream sequence of the message
        each point came from. A point replaces a stored point of the same identity only if
        its sequence is not lower than the stored one's, whatever order calls arrive in
        (a redelivery after a crash, or a second daemon, never overwrites a newer rewrite).
        Within one call the highest sequence wins; on equal sequences the later point in
        the list. ``seqs=None`` writes every point with sequence 0 (writes from outside the
        stream: tests, seeding), which never replaces a value that came from the stream.

        Windows (15 min, per site) of the points that end at or before ``late_cutoff_ns``,
        or that were already rolled up, are marked late in the same commit."""
        ...

    def read_points(
        self,
        start_ns: int,
        end_ns: int,
        *,
        measurement: str | None = None,
        field: str | None = None,
        site_id: str | None = None,
        device_id: str | None = None,
    ) -> pl.DataFrame: ...

    def scan_points(self, start_ns: int, end_ns: int) -> pl.DataFrame:
        """Every raw point in ``[start, end)``, columns as :meth:`read_points`, in no
        promised order: for consumers that aggregate anyway (the raw reconciliation
        check), so a backend may skip sorting and joining."""
        ...

    def recount_raw(self, start_ns: int, end_ns: int, width_ns: int) -> pl.DataFrame:
        """The same partials as :meth:`aggregate_raw` (``PARTIAL_SCHEMA``, in no promised
        order), computed by a path written apart from it, for the raw reconciliation check:
        a mistake in one (a dropped row, a boundary point in the wrong window, first and
        last swapped, misnamed series) shows as a mismatch instead of hiding in both.
        SQLite recounts in SQL of its own (``sqlite/recount.py``); the others read the
        points back and recompute them in polars (``rollup.recount_from_points``)."""
        ...

    def aggregate_raw(
        self, start_ns: int, end_ns: int, width_ns: int, *, site_id: str | None = None
    ) -> pl.DataFrame:
        """Per-series partials of raw points per window (ROLLUP_COLUMNS minus is_work_hours)."""
        ...

    def replace_rollups(
        self,
        level: str,
        start_ns: int,
        end_ns: int,
        rows: pl.DataFrame,
        *,
        site_id: str | None = None,
    ) -> int:
        """Delete the level's rows in ``[start, end)`` (of one site, if given), insert
        ``rows`` and record the windows as rolled up, in one commit."""
        ...

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
    ) -> pl.DataFrame: ...

    def rolled_up_windows(
        self, level: str, start_ns: int, end_ns: int
    ) -> list[tuple[int, str]]: ...

    def late_windows(self, limit: int = 100) -> list[LateWindow]:
        """Marked windows, newest window first."""
        ...

    def clear_late_windows(self, windows: Sequence[tuple[int, str]], marked_up_to_ns: int) -> int:
        """Remove marks not touched after ``marked_up_to_ns`` (a later mark survives)."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    # Retention (telemetry_core.retention decides what may go; stores count and delete).
    # Windows are of the level's width (15 minutes for raw points), labelled by start.
    def retention_oldest(self, level: str | None, before_ns: int) -> int | None:
        """Time (raw, level None) or window start (a rollup level) of the oldest row
        before ``before_ns``; None when there is none."""
        ...

    def retention_counts(self, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        """Rows per window in ``[start, end)``, windows without rows left out."""
        ...

    def retention_delete(self, level: str | None, expected: Mapping[int, int]) -> dict[int, int]:
        """Delete every row of each window whose row count is still ``expected[ws]`` (a
        window written since it was verified is left alone); returns the rows deleted
        per window deleted."""
        ...
