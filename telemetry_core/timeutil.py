"""Nanosecond timestamps: parsing device timestamps and CLI times, printing RFC 3339.

Python's ``datetime`` stops at microseconds, so times are plain ``int`` nanoseconds since
the Unix epoch (UTC) everywhere; this module is the only place that converts.

Epoch numbers are told apart by magnitude (absolute value):

* below 1e11 -> seconds (up to the year 5138)
* below 1e14 -> milliseconds
* below 1e17 -> microseconds
* otherwise  -> nanoseconds
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta

NS = 1_000_000_000
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"([Zz]|[+-]\d{2}:\d{2})"
)
_RELATIVE = re.compile(r"([+-])\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS,
    "m": 60 * NS,
    "h": 3600 * NS,
    "d": 86400 * NS,
    "w": 7 * 86400 * NS,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    pass


def now_ns() -> int:
    return time.time_ns()


def parse_rfc3339(text: str) -> int:
    """RFC 3339 text -> ns since epoch, keeping up to 9 fractional digits exactly."""
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise TimestampError(f"timestamp {text[:64]!r} is not RFC 3339 (e.g. 2026-11-20T07:00:00Z)")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    try:
        base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise TimestampError(f"timestamp {text[:64]!r}: {exc}") from None
    seconds = (base - _EPOCH) // timedelta(seconds=1)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds * NS + nanos


def parse_epoch(value: int | float) -> int:
    """Epoch number -> ns, unit chosen by magnitude (see module docstring)."""
    if isinstance(value, bool):
        raise TimestampError("timestamp must be a number or RFC 3339 text, not a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise TimestampError("timestamp is not finite")
    mag = abs(value)
    if mag < 1e11:
        scale = NS
    elif mag < 1e14:
        scale = 1_000_000
    elif mag < 1e17:
        scale = 1_000
    else:
        scale = 1
    if isinstance(value, int):
        result = value * scale
    else:  # split so the integer part keeps full precision (a float has only 53 bits)
        whole = int(value)
        result = whole * scale + round((value - whole) * scale)
    if not -(2**63) <= result < 2**63:
        raise TimestampError("timestamp out of range")
    return result


def parse_timestamp(value: object) -> int:
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return parse_epoch(value)
    raise TimestampError(
        f"timestamp must be RFC 3339 text or an epoch number, got {type(value).__name__}"
    )


def format_rfc3339(ns: int) -> str:
    """ns -> RFC 3339 UTC with a Z, keeping every non-zero fractional digit."""
    seconds, nanos = divmod(int(ns), NS)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def parse_time_arg(text: str, *, now: int | None = None) -> int:
    """A CLI time: RFC 3339, ``now``, or relative to now (``-8h``, ``-30m``, ``-2d``)."""
    stripped = text.strip()
    reference = now_ns() if now is None else now
    if stripped == "now":
        return reference
    m = _RELATIVE.fullmatch(stripped)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        return reference + sign * int(float(m.group(2)) * _UNIT_NS[m.group(3)])
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
        stripped += "T00:00:00Z"
    try:
        return parse_rfc3339(stripped)
    except TimestampError:
        raise TimestampError(
            f"time {text!r} is neither RFC 3339 (2026-11-20T07:00:00Z), a date, 'now',"
            " nor relative (-8h, -30m, -2d)"
        ) from None


def to_datetime(ns: int) -> datetime:
    """ns -> aware UTC datetime (microsecond precision, for display and Dagster)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1_000
