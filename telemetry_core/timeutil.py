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


# The times a user may write (CLI flags, API parameters), as one regular expression that the
# OpenAPI schema publishes as is: what matches it parses, and nothing else does. It is
# written for every regex dialect a client may use (ECMA-262, Python, Rust): no look-around,
# no \d or \s (Unicode-wide in Python). Dates are checked here rather than by ``datetime``
# (month lengths, leap years), so a client that matches the pattern is never refused.
# Years are 1678-2261: a time is int64 nanoseconds since 1970 (1677-09-21 .. 2262-04-11),
# with a day's margin for any UTC offset. A relative time's digits are bounded per unit so
# that it stays under 115 years from now (``9999d``, ``999999h``, ``999w``).
_YEAR = "(167[89]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])"
_LEAP_YEAR = (  # divisible by 4; of the centuries only 2000
    "(16(8[048]|9[26])|1[7-9]([02468][48]|[13579][26]|[2468]0)|20([02468][048]|[13579][26])"
    "|21([02468][48]|[13579][26]|[2468]0)|22([024][48]|[135][26]|[246]0))"
)
_MONTH_DAY = "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
_DATE = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_CLOCK = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?"
_OFFSET = "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_FRACTION = "([.][0-9]{1,9})?"
_RELATIVE_DIGITS = {"ns": 18, "us": 15, "µs": 15, "ms": 12, "s": 9, "m": 7, "h": 6, "d": 4, "w": 3}
_RELATIVE = (
    "[+-]("
    + "|".join(f"[0-9]{{1,{n}}}{_FRACTION}{unit}" for unit, n in _RELATIVE_DIGITS.items())
    + ")"
)
TIME_PATTERN = f"^(now|{_RELATIVE}|{_DATE}([Tt ]{_CLOCK}{_OFFSET})?)$"
TIME_EXAMPLES = ("-8h", "-30m", "-7d", "now", "2026-11-20", "2026-11-20T07:00:00Z")
_TIME = re.compile(TIME_PATTERN)
_RELATIVE_PARTS = re.compile(r"([+-])([0-9]+(?:[.][0-9]+)?)(ns|us|µs|ms|s|m|h|d|w)")


def parse_time_arg(text: str, *, now: int | None = None) -> int:
    """A user's time: RFC 3339, a date (its UTC midnight), ``now``, or relative to now
    (``-8h``, ``-30m``, ``-2d``; units ns us µs ms s m h d w). Exactly the strings that match
    ``TIME_PATTERN``: no surrounding blanks (the API publishes the pattern, and a client
    that follows it must neither be refused nor find the server laxer than its schema)."""
    if _TIME.fullmatch(text) is None:
        raise TimestampError(
            f"time {text[:64]!r} is neither RFC 3339 (2026-11-20T07:00:00Z), a date"
            " (2026-11-20), 'now', nor relative (-8h, -30m, -2d)"
        )
    reference = now_ns() if now is None else now
    if text == "now":
        return reference
    m = _RELATIVE_PARTS.fullmatch(text)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        whole, _, frac = m.group(2).partition(".")
        unit = _UNIT_NS[m.group(3)]  # exact: no float rounding of 18-digit nanoseconds
        return reference + sign * (int(whole) * unit + int(frac or "0") * unit // 10 ** len(frac))
    if len(text) == 10:
        text += "T00:00:00Z"
    return parse_rfc3339(text)


def to_datetime(ns: int) -> datetime:
    """ns -> aware UTC datetime (microsecond precision, for display and Dagster)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1_000
