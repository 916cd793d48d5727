"""``TIME_PATTERN``, the accepted forms of a user's time, against ``parse_time_arg``.

The HTTP API publishes the pattern in its OpenAPI schema and FastAPI enforces it (with
pydantic's regex engine, not Python's), so a client that follows the schema must never be
refused, and the server must refuse what the schema does: every string the pattern matches
parses, nothing else does, and both regex engines agree on where the line is.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from telemetry_core.timeutil import (
    TIME_EXAMPLES,
    TIME_PATTERN,
    TimestampError,
    format_rfc3339,
    parse_rfc3339,
    parse_time_arg,
)

PATTERN = re.compile(TIME_PATTERN)
NOW = parse_rfc3339("2026-11-20T07:00:00Z")
INT64 = (-(2**63), 2**63 - 1)
# FastAPI's Query(pattern=...) is a pydantic string constraint: the engine the server uses.
SERVER = TypeAdapter(Annotated[str, FieldInfo(pattern=TIME_PATTERN)])

# Forms the docs, the README and the CLI's help show; each must be accepted.
DOCUMENTED = [
    *TIME_EXAMPLES,
    "-1h", "-2d", "-30d", "-90s", "+2h", "-1.5h", "-250ms", "-10us", "-10µs", "-5ns", "-2w",
    "2026-11-20T07:00:00Z", "2026-11-20T06:59:59.999999999Z", "2026-11-20T08:00:00+01:00",
    "2026-11-20T07:00:00.5-05:30", "2026-11-20 07:00:00Z", "2026-11-20t07:00:00z",
    "2024-02-29", "2000-02-29T00:00:00Z",
]  # fmt: skip
REFUSED = [
    "", " ", "\x08.", " -1h", "-1h ", "-8 h", "8h", "-h", "-1y", "now ", "Now", "yesterday",
    "now\n", "-1h\n", "2026-11-20\n",
    "2026-02-29", "1900-02-29", "2100-02-29", "2026-04-31", "2026-13-01", "2026-00-10",
    "2026-11-20T24:00:00Z", "2026-11-20T07:60:00Z", "2026-11-20T07:00:60Z",
    "2026-11-20T07:00:00", "2026-11-20T07:00:00+24:00", "2026-11-20T07:00:00.Z",
    "2026-11-20T07:00:00.1234567890Z", "2026-11-20T07:00Z", "20261120", "1677-12-31",
    "2262-01-01", "-1000w", "-10000d", "-1000000h", "-1234567890s", "-٣h", "٢٠٢٦-11-20",
]  # fmt: skip


@pytest.mark.parametrize("text", DOCUMENTED)
def test_documented_forms_match_and_parse(text):
    assert PATTERN.fullmatch(text), text
    SERVER.validate_python(text)
    parse_time_arg(text, now=NOW)


@pytest.mark.parametrize("text", REFUSED)
def test_other_text_is_refused_by_the_parser_and_the_server_alike(text):
    assert not PATTERN.fullmatch(text)
    with pytest.raises(TimestampError):
        parse_time_arg(text, now=NOW)
    with pytest.raises(ValidationError):
        SERVER.validate_python(text)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(TIME_PATTERN, fullmatch=True))
def test_every_string_the_pattern_matches_parses(text):
    ns = parse_time_arg(text, now=NOW)
    assert INT64[0] <= ns <= INT64[1]
    assert INT64[0] <= ns + 7 * 24 * 3600 * 10**9 <= INT64[1]  # a window's end too
    format_rfc3339(ns)  # printable (a window start or end in an answer)
    SERVER.validate_python(text)  # and the server's regex engine agrees


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_any_text_parses_exactly_when_it_matches(text):
    matches = PATTERN.fullmatch(text) is not None
    try:
        parse_time_arg(text, now=NOW)
        parsed = True
    except TimestampError:
        parsed = False
    try:
        SERVER.validate_python(text)
        served = True
    except ValidationError:
        served = False
    assert parsed == matches == served, text


def test_the_pattern_knows_every_calendar_day():
    """Month lengths and leap years, 1600-2300: a date matches iff it exists and its year
    is 1678-2261 (int64 nanoseconds since 1970 reach 1677-09-21 to 2262-04-11)."""
    for year in range(1600, 2301):
        for month in range(13):
            for day in range(33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    exists = date(year, month, day) is not None
                except ValueError:
                    exists = False
                assert bool(PATTERN.fullmatch(text)) == (exists and 1678 <= year <= 2261), text
    day = date(2024, 2, 28) + timedelta(days=1)
    assert parse_time_arg(day.isoformat(), now=0) == parse_rfc3339("2024-02-29T00:00:00Z")
