import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry_core.timeutil import (
    TimestampError,
    format_rfc3339,
    parse_epoch,
    parse_rfc3339,
    parse_time_arg,
)
from telemetry_core.windows import (
    WINDOW_15M_NS,
    parse_partition_key,
    partition_key,
    window_bounds,
    window_start,
    windows_between,
)

NS = 10**9
H8 = calendar.timegm((2026, 11, 20, 8, 0, 0)) * NS


def test_window_is_half_open_on_clock_boundaries():
    assert window_bounds(H8) == (H8, H8 + WINDOW_15M_NS)  # 08:00:00.000 starts 08:00-08:15
    assert window_start(H8 - 1) == H8 - WINDOW_15M_NS  # 07:59:59.999999999 is 07:45-08:00
    assert window_start(H8 + WINDOW_15M_NS - 1) == H8
    assert list(windows_between(H8 - 1, H8 + WINDOW_15M_NS)) == [H8 - WINDOW_15M_NS, H8]


def test_partition_keys_round_trip():
    assert partition_key(H8) == "2026-11-20-08:00"
    assert parse_partition_key("2026-11-20-08:15") == H8 + WINDOW_15M_NS


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        (1_700_000_000, 1_700_000_000 * NS),  # seconds
        (1_700_000_000_123, 1_700_000_000_123 * 10**6),  # ms
        (1_700_000_000_123_456, 1_700_000_000_123_456 * 10**3),  # µs
        (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),  # ns
        (1_700_000_000.25, 1_700_000_000_250_000_000),
        (4_000_000_000, 4_000_000_000 * NS),  # year 2096, still seconds
        (100_000_000_000, 100_000_000_000 * 10**6),  # from 1e11 on: milliseconds
    ],
)
def test_epoch_units_by_magnitude(value, ns):
    assert parse_epoch(value) == ns


def test_rfc3339_forms_and_errors():
    assert parse_rfc3339("2026-11-20T08:00:00Z") == H8
    assert parse_rfc3339("2026-11-20 09:30:00+01:30") == H8
    assert parse_rfc3339("2026-11-20T08:00:00.5z") == H8 + NS // 2
    for bad in (
        "2026-11-20",
        "2026-11-20T08:00:00",
        "2026-02-30T00:00:00Z",
        "2026-11-20T08:00:00.1234567891Z",
    ):
        with pytest.raises(TimestampError):
            parse_rfc3339(bad)


@given(st.integers(min_value=0, max_value=2**62))
def test_format_then_parse_is_exact(ns):
    text = format_rfc3339(ns)
    assert text.endswith("Z")
    assert parse_rfc3339(text) == ns


def test_format_keeps_every_digit():
    assert format_rfc3339(H8 - 1) == "2026-11-20T07:59:59.999999999Z"
    assert format_rfc3339(H8) == "2026-11-20T08:00:00Z"


def test_cli_times():
    assert parse_time_arg("-8h", now=H8) == H8 - 8 * 3600 * NS
    assert parse_time_arg("-30m", now=H8) == H8 - 1800 * NS
    assert parse_time_arg("now", now=H8) == H8
    assert parse_time_arg("2026-11-20", now=0) == H8 - 8 * 3600 * NS
    with pytest.raises(TimestampError, match="relative"):
        parse_time_arg("last tuesday")


def test_epoch_beyond_int64_nanoseconds_is_an_error():
    with pytest.raises(TimestampError, match="out of range"):
        parse_epoch(99_999_999_999)  # seconds, but past the year 2262
