"""Answering questions: one series or a ranking, at the right resolution, from the store.

``telemetry query`` and the HTTP API (``telemetry api``) both call this module, so the CLI and
the API can never disagree on which resolution ``auto`` picks, how a window is labelled, or
what the headline value of a field is.

Why read the *stored* site and portfolio rollups rather than recompute them from device rows:
the stored rows are the ones Dagster's pandera and reconciliation checks validated, and they
are 10-200x fewer rows to read.

Resolution ``auto``: raw points for spans up to one hour (device scope only: raw points have
no site or portfolio form, so wider scopes start at 15 minutes), 15-minute rollups up to
seven days, hourly beyond. Rollup windows are half-open ``[start, end)``, labelled by their
start; a window is returned when it overlaps the requested range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from telemetry_core.config import Config
from telemetry_core.identifiers import IdentifierError, check_field, check_name
from telemetry_core.rollup import headline
from telemetry_core.store.base import ALL, Store
from telemetry_core.timeutil import TimestampError, format_rfc3339, now_ns, parse_time_arg
from telemetry_core.windows import DAY_NS, HOUR_NS, RESOLUTIONS_NS, window_start

RESOLUTIONS = ("auto", "raw", "15m", "1h")
SCOPES = ("device", "site", "portfolio")
TOP_BY = ("site", "device")
RAW_MAX_SPAN_NS = HOUR_NS
QUARTER_MAX_SPAN_NS = 7 * DAY_NS
MAX_LIMIT = 1000
RAW_KEYS = ("time", "measurement", "site_id", "device_id", "field", "value")
STATS = ("count", "sum", "min", "max", "mean", "first", "last")


class QueryError(ValueError):
    """A bad request parameter; ``parameter`` names it (the API answers 400 with it)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class SeriesQuery:
    measurement: str
    field: str
    start_ns: int
    end_ns: int
    site: str | None = None
    device: str | None = None
    scope: str = "device"
    resolution: str = "auto"
    work_hours: bool | None = None


def pick_resolution(resolution: str, scope: str, span_ns: int) -> str:
    """The resolution ``auto`` stands for (see the module docstring); others unchanged."""
    if resolution != "auto":
        return resolution
    if span_ns <= RAW_MAX_SPAN_NS and scope == "device":
        return "raw"
    return "15m" if span_ns <= QUARTER_MAX_SPAN_NS else "1h"


def _name(value: str | None, parameter: str, *, field: bool = False) -> str | None:
    if value is None:
        return None
    try:
        return check_field(value, parameter) if field else check_name(value, parameter)
    except IdentifierError as exc:
        raise QueryError(parameter, str(exc)) from None


def _time(value: str, parameter: str, now: int) -> int:
    try:
        return parse_time_arg(value, now=now)
    except TimestampError as exc:
        raise QueryError(parameter, f"{parameter}: {exc}") from None


def parse_time(value: str, parameter: str, *, now: int | None = None) -> int:
    """One time (RFC 3339, a date, ``now`` or relative), a ``QueryError`` naming
    ``parameter`` when it is none of them."""
    return _time(value, parameter, now_ns() if now is None else now)


def parse_range(start: str, end: str, *, now: int | None = None) -> tuple[int, int]:
    """RFC 3339 or relative (``-8h``) times; ``end`` must come after ``start``."""
    reference = now_ns() if now is None else now
    a, b = _time(start, "start", reference), _time(end, "end", reference)
    if b <= a:
        raise QueryError(
            "end", f"end ({format_rfc3339(b)}) must be after start ({format_rfc3339(a)})"
        )
    return a, b


def build_query(
    *,
    measurement: str | None,
    field: str | None,
    start: str = "-1h",
    end: str = "now",
    site: str | None = None,
    device: str | None = None,
    scope: str = "device",
    resolution: str = "auto",
    work_hours: bool | None = None,
    now: int | None = None,
) -> SeriesQuery:
    """Validate every parameter, naming the first bad one."""
    if not measurement:
        raise QueryError("measurement", "measurement is required (e.g. energy)")
    if not field:
        raise QueryError("field", "field is required (e.g. power_w)")
    measurement = _name(measurement, "measurement")
    field = _name(field, "field", field=True)
    site, device = _name(site, "site"), _name(device, "device")
    if scope not in SCOPES:
        raise QueryError("scope", f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if resolution not in RESOLUTIONS:
        raise QueryError(
            "resolution", f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}"
        )
    start_ns, end_ns = parse_range(start, end, now=now)
    if device is not None and scope != "device":
        raise QueryError("device", "device only applies at scope device")
    if site is not None and scope == "portfolio":
        raise QueryError("site", "site does not apply at scope portfolio (all sites)")
    if resolution == "raw" and scope != "device":
        raise QueryError(
            "resolution", "raw points have no site or portfolio scope: use 15m, 1h or auto"
        )
    if work_hours is not None and scope == "portfolio":
        raise QueryError(
            "work_hours", "work hours are per site: the portfolio has no is_work_hours"
        )
    assert measurement is not None and field is not None
    return SeriesQuery(
        measurement, field, start_ns, end_ns, site, device, scope, resolution, work_hours
    )


def _level(resolution: str, scope: str) -> str:
    return resolution if scope == "device" else f"{scope}_{resolution}"


def series(
    store: Store, config: Config, q: SeriesQuery, *, with_value: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """(resolution used, rows). Rows carry the keys of ``telemetry query --format json``;
    ``with_value`` adds ``value``, the field kind's headline, to rollup rows (the API)."""
    resolution = pick_resolution(q.resolution, q.scope, q.end_ns - q.start_ns)
    if resolution == "raw":
        return resolution, _raw_rows(store, config, q)
    width = RESOLUTIONS_NS[resolution]
    frame = store.read_rollups(
        _level(resolution, q.scope),
        window_start(q.start_ns, width),
        q.end_ns,
        measurement=q.measurement,
        field=q.field,
        site_id=q.site,
        device_id=q.device,
    )
    if q.work_hours is not None:
        frame = frame.filter(pl.col("is_work_hours").fill_null(False) == q.work_hours)
    pick = headline(config.field_kind(q.measurement, q.field))
    rows = []
    for r in frame.iter_rows(named=True):
        out: dict[str, Any] = {
            "window_start": format_rfc3339(r["window_start"]),
            "window_end": format_rfc3339(r["window_start"] + width),
            "measurement": r["measurement"],
            "site_id": None if q.scope == "portfolio" else r["site_id"],
        }
        if q.scope == "device":
            out["device_id"] = r["device_id"]
        out["field"] = r["field"]
        mean = r["sum"] / r["count"] if r["count"] else None
        out.update(
            count=r["count"], sum=r["sum"], min=r["min"], max=r["max"], mean=mean,
            first=r["first"], last=r["last"],
        )  # fmt: skip
        if q.scope != "portfolio":
            out["is_work_hours"] = r["is_work_hours"]
        if with_value:
            out["value"] = out[pick]
        rows.append(out)
    return resolution, rows


def _raw_rows(store: Store, config: Config, q: SeriesQuery) -> list[dict[str, Any]]:
    frame = store.read_points(
        q.start_ns,
        q.end_ns,
        measurement=q.measurement,
        field=q.field,
        site_id=q.site,
        device_id=q.device,
    )
    rows = []
    for r in frame.select(RAW_KEYS).iter_rows(named=True):
        if q.work_hours is not None:
            inside = config.site(r["site_id"]).is_work_hours(window_start(r["time"]))
            if inside != q.work_hours:
                continue
        rows.append({**r, "time": format_rfc3339(r["time"])})
    return rows


def top(
    store: Store,
    config: Config,
    *,
    measurement: str,
    field: str,
    start_ns: int,
    end_ns: int,
    by: str = "site",
    limit: int = 10,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """Sites or devices ranked by the field's headline total over the range, largest first:
    the sum for ``delta`` fields (energy used), the mean of every reading otherwise. Read from
    the stored 15-minute rollups for ranges up to seven days, hourly beyond."""
    if by not in TOP_BY:
        raise QueryError("by", f"by must be one of {', '.join(TOP_BY)}, not {by!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", f"limit must be between 1 and {MAX_LIMIT}")
    resolution = pick_resolution("auto", "site", end_ns - start_ns)
    width = RESOLUTIONS_NS[resolution]
    scope = "site" if by == "site" else "device"
    frame = store.read_rollups(
        _level(resolution, scope),
        window_start(start_ns, width),
        end_ns,
        measurement=measurement,
        field=field,
        site_id=site,
    )
    keys = ["site_id"] if by == "site" else ["site_id", "device_id"]
    frame = frame.filter(pl.col("site_id") != ALL)
    if frame.height == 0:
        return []
    totals = frame.group_by(keys).agg(pl.col("sum").sum(), pl.col("count").sum())
    if headline(config.field_kind(measurement, field)) == "sum":
        value = pl.col("sum")
    else:
        value = pl.col("sum") / pl.col("count")
    ranked = totals.with_columns(value.alias("value")).sort(
        ["value", *keys], descending=[True] + [False] * len(keys)
    )
    return [
        {**{k: r[k] for k in keys}, "value": r["value"]}
        for r in ranked.head(limit).iter_rows(named=True)
    ]
