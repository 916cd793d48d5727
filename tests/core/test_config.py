import calendar
from pathlib import Path

import pytest

from telemetry_core.config import ConfigError, load_config, parse_config

NS = 10**9
EXAMPLE = """
[sites.site-a]
timezone = "Europe/Berlin"
work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }

[fields]
"energy.energy_kwh" = "delta"
"energy.power_w" = "gauge"
"occupancy.occupied" = "state"

[[thresholds]]
measurement = "energy"
field = "power_w"
above = 5000.0
severity = "critical"

[retention]
raw_days = 14
"""


def utc(*args) -> int:
    return calendar.timegm(args) * NS


def test_design_example_loads(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(EXAMPLE)
    cfg = load_config(path)
    assert cfg.field_kind("energy", "energy_kwh") == "delta"
    assert cfg.field_kind("hvac", "temperature_c") == "gauge"  # default
    assert cfg.retention.raw_days == 14 and cfg.retention.rollup_15m_days == 90
    [t] = cfg.thresholds_for("energy", "site-a", "m-1", "power_w")
    assert t.breached(5000.1) and not t.breached(5000.0) and t.severity == "critical"


def test_work_hours_are_local_and_dst_aware():
    cfg = parse_config({"sites": {"site-a": {"timezone": "Europe/Berlin", "work_hours": {}}}})
    site = cfg.site("site-a")
    # Winter (UTC+1): 08:00 Berlin = 07:00 UTC on Monday 2026-11-23
    assert site.is_work_hours(utc(2026, 11, 23, 7, 0, 0))
    assert not site.is_work_hours(utc(2026, 11, 23, 6, 45, 0))
    assert site.is_work_hours(utc(2026, 11, 23, 16, 45, 0))  # 17:45 local
    assert not site.is_work_hours(utc(2026, 11, 23, 17, 0, 0))  # 18:00 local: end is exclusive
    # Summer (UTC+2): 08:00 Berlin = 06:00 UTC on Monday 2026-06-22
    assert site.is_work_hours(utc(2026, 6, 22, 6, 0, 0))
    assert not site.is_work_hours(utc(2026, 6, 22, 5, 45, 0))
    # Saturday
    assert not site.is_work_hours(utc(2026, 11, 21, 10, 0, 0))


def test_unknown_site_is_utc_without_work_hours():
    cfg = parse_config({})
    assert cfg.site("nowhere").timezone == "UTC"
    assert not cfg.site("nowhere").is_work_hours(utc(2026, 11, 23, 10, 0, 0))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"site": {}}, "unknown key 'site'"),
        ({"sites": {"a": {"timezone": "UTC", "work_hour": {}}}}, "unknown key 'work_hour'"),
        ({"sites": {"a": {"timezone": "Mars/Olympus"}}}, "unknown IANA time zone"),
        ({"sites": {"a": {"work_hours": {"days": ["monday"]}}}}, "work_hours.days"),
        ({"sites": {"a": {"work_hours": {"start": "8am"}}}}, "HH:MM"),
        ({"fields": {"energy.kwh": "sum"}}, "kind must be one of"),
        ({"fields": {"energy": "delta"}}, "measurement.field"),
        ({"thresholds": [{"measurement": "e", "field": "f"}]}, "needs 'above' or 'below'"),
        (
            {"thresholds": [{"measurement": "e", "field": "f", "above": 1, "colour": "red"}]},
            "unknown key 'colour'",
        ),
        ({"retention": {"raw_days": 0}}, "positive integer"),
        ({"retention": {"raw_dayz": 3}}, "unknown key 'raw_dayz'"),
        ({"sites": {"bad site": {}}}, "site id"),
    ],
)
def test_config_errors_name_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_missing_file_and_bad_toml(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sites\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("rollups", "grace", "start"),
    [
        ({}, 120, "2026-01-01T00:00:00Z"),
        ({"grace_seconds": 0, "start": "2026-03-29T01:00:00+00:00"}, 0, "2026-03-29T01:00:00Z"),
        ({"start": "2026-03-29T03:00:00+02:00"}, 120, "2026-03-29T01:00:00Z"),
    ],
)
def test_rollups_section(rollups, grace, start):
    cfg = parse_config({"rollups": rollups})
    assert cfg.rollups.grace_seconds == grace
    assert cfg.rollups.start == start


def test_rollups_start_as_toml_date_and_datetime(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[rollups]\nstart = 2026-05-01\n")
    assert load_config(path).rollups.start == "2026-05-01T00:00:00Z"
    path.write_text("[rollups]\nstart = 2026-05-01T06:00:00\n")  # local: read as UTC
    assert load_config(path).rollups.start_ns == utc(2026, 5, 1, 6, 0, 0)


@pytest.mark.parametrize(
    ("rollups", "message"),
    [
        ({"grace_seconds": -1}, "grace_seconds must be an integer from 0 to 86400"),
        ({"grace_seconds": 1.5}, "grace_seconds must be an integer"),
        ({"grace_seconds": True}, "grace_seconds must be an integer"),
        ({"start": "yesterday"}, r"\[rollups\] start must be an RFC 3339 time"),
        ({"start": "2026-01-01T00:15:00Z"}, "whole UTC hour"),
        ({"grace": 60}, "unknown key 'grace'"),
    ],
)
def test_rollups_errors_name_the_key(rollups, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"rollups": rollups})
