"""The TOML configuration: sites, field kinds, alert rules, retention, rollups.

Validated once into frozen objects. An unknown key is an error naming the key: a typo in
``work_hour`` must not silently give a site no work hours.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telemetry_core.alerts.matchers import (
    MAINTENANCE_KEYS,
    MaintenanceWindow,
    check_matchers,
    maintenance_where,
)
from telemetry_core.alerts.rules import (
    SEVERITIES,
    AlertSettings,
    AnomalyRule,
    Threshold,
    parse_rules,
)
from telemetry_core.dictionaries import parse_dictionaries
from telemetry_core.errors import ConfigError
from telemetry_core.identifiers import IdentifierError, check_field, check_name
from telemetry_core.timeutil import (
    TimestampError,
    format_rfc3339,
    from_datetime,
    parse_rfc3339,
    to_datetime,
)
from telemetry_core.windows import HOUR_NS

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("delta", "gauge", "state")
__all__ = [
    "SEVERITIES",
    "AlertSettings",
    "AnomalyRule",
    "Config",
    "ConfigError",
    "Threshold",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True)
class WorkHours:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        """Half-open [start, end) on the listed days; start > end spans midnight."""
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        if t >= self.start:
            return local.weekday() in self.days
        return (local.weekday() - 1) % 7 in self.days and t < self.end


@dataclass(frozen=True)
class Site:
    site_id: str
    timezone: str = "UTC"
    work_hours: WorkHours | None = None
    expected_devices: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_work_hours(self, window_start_ns: int) -> bool:
        """A window is work-hours when its start falls inside the site's local hours."""
        if self.work_hours is None:
            return False
        local = to_datetime(window_start_ns).astimezone(self.zone)
        return self.work_hours.contains(local)


@dataclass(frozen=True)
class Retention:
    raw_days: int = 30
    rollup_15m_days: int = 90
    # False: no retention_schedule (the store keeps everything, or its server expires
    # data itself: InfluxDB 3.x cannot delete points).
    enabled: bool = True


@dataclass(frozen=True)
class Rollups:
    """``[rollups]``: read by the Dagster code location when it loads (they shape its
    partitions and schedule) and by the daemon (what counts as late)."""

    # A window is rolled up this long after it ends; a point arriving later is late.
    grace_seconds: int = 120
    start: str = "2026-01-01T00:00:00Z"  # first partition, RFC 3339 on a whole UTC hour

    @property
    def start_ns(self) -> int:
        return parse_rfc3339(self.start)


@dataclass(frozen=True)
class Config:
    sites: dict[str, Site] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # "measurement.field" -> kind
    thresholds: tuple[Threshold, ...] = ()
    retention: Retention = Retention()
    rollups: Rollups = Rollups()
    anomalies: tuple[AnomalyRule, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # [dictionaries.<name>]: integer key -> field name (header Telemetry-Dictionary)
    dictionaries: dict[str, dict[int, str]] = field(default_factory=dict)

    def site(self, site_id: str) -> Site:
        """A site missing from the file has UTC and no work hours."""
        return self.sites.get(site_id) or Site(site_id)

    def field_kind(self, measurement: str, fld: str) -> str:
        return self.fields.get(f"{measurement}.{fld}", "gauge")

    def thresholds_for(self, measurement: str, site_id: str, device_id: str, fld: str):
        return [t for t in self.thresholds if t.matches(measurement, site_id, device_id, fld)]


def _take(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})"
        )


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _hhmm(value: Any, where: str) -> time:
    try:
        parsed = datetime.strptime(str(value), "%H:%M").time()
    except ValueError:
        raise ConfigError(f"{where} must be HH:MM, got {value!r}") from None
    return parsed


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value


def _site(site_id: str, raw: Any) -> Site:
    where = f"[sites.{site_id}]"
    try:
        check_name(site_id, "site id")
    except IdentifierError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    data = _table(raw, where)
    _take(data, {"timezone", "work_hours", "expected_devices"}, where)
    tz = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown IANA time zone {tz!r}") from None
    hours = None
    if "work_hours" in data:
        wh = _table(data["work_hours"], f"{where} work_hours")
        _take(wh, {"days", "start", "end"}, f"{where} work_hours")
        days = wh.get("days", list(DAYS[:5]))
        if not isinstance(days, list) or any(d not in DAYS for d in days):
            raise ConfigError(f"{where} work_hours.days must be a list of {', '.join(DAYS)}")
        start = _hhmm(wh.get("start", "08:00"), f"{where} work_hours.start")
        end = _hhmm(wh.get("end", "18:00"), f"{where} work_hours.end")
        if start == end:
            raise ConfigError(f"{where} work_hours.start and end are equal")
        hours = WorkHours(frozenset(DAYS.index(d) for d in days), start, end)
    expected = data.get("expected_devices")
    if expected is not None:
        expected = _positive_int(expected, f"{where} expected_devices")
    return Site(site_id, str(tz), hours, expected)


def parse_config(data: dict[str, Any]) -> Config:
    _take(
        data,
        {
            "sites",
            "fields",
            "thresholds",
            "anomalies",
            "alerts",
            "retention",
            "rollups",
            "maintenance",
            "dictionaries",
        },
        "the config file",
    )
    sites = {sid: _site(sid, raw) for sid, raw in _table(data.get("sites", {}), "[sites]").items()}
    fields: dict[str, str] = {}
    for key, kind in _table(data.get("fields", {}), "[fields]").items():
        measurement, _, fld = key.partition(".")
        try:
            check_name(measurement, "measurement")
            check_field(fld)
        except IdentifierError as exc:
            raise ConfigError(f"[fields] key {key!r} must be 'measurement.field': {exc}") from None
        if kind not in KINDS:
            raise ConfigError(f"[fields] {key!r}: kind must be one of {', '.join(KINDS)}")
        fields[key] = kind
    thresholds, anomalies, alerts = parse_rules(data)  # telemetry_core/alerts/rules.py
    ret = _table(data.get("retention", {}), "[retention]")
    _take(ret, {"raw_days", "rollup_15m_days", "enabled"}, "[retention]")
    enabled = ret.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("[retention] enabled must be true or false")
    retention = Retention(
        _positive_int(ret.get("raw_days", 30), "[retention] raw_days"),
        _positive_int(ret.get("rollup_15m_days", 90), "[retention] rollup_15m_days"),
        enabled,
    )
    rollups = _rollups(_table(data.get("rollups", {}), "[rollups]"))
    alerts = _with_maintenance(alerts, data, sites)
    config = Config(sites, fields, thresholds, retention, rollups, anomalies, alerts)
    dictionaries = parse_dictionaries(data.get("dictionaries", {}))
    return replace(config, dictionaries=dictionaries)


def _rollups(roll: dict[str, Any]) -> Rollups:
    _take(roll, {"grace_seconds", "start"}, "[rollups]")
    grace = roll.get("grace_seconds", Rollups.grace_seconds)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 86_400:
        raise ConfigError(
            f"[rollups] grace_seconds must be an integer from 0 to 86400, got {grace!r}"
        )
    start = roll.get("start", Rollups.start)
    if isinstance(start, datetime):  # a TOML datetime; a local one is read as UTC
        start = (start if start.tzinfo else start.replace(tzinfo=UTC)).isoformat()
    elif isinstance(start, date):  # a TOML date: its midnight, UTC
        start = f"{start.isoformat()}T00:00:00Z"
    try:
        start_ns = parse_rfc3339(str(start))
    except TimestampError:
        raise ConfigError(
            f"[rollups] start must be an RFC 3339 time such as {Rollups.start!r}, got {start!r}"
        ) from None
    if start_ns % HOUR_NS:
        raise ConfigError(
            f"[rollups] start must be on a whole UTC hour (the hourly partitions start there "
            f"too), got {start!r}"
        )
    return Rollups(grace, format_rfc3339(start_ns))


def _with_maintenance(
    alerts: AlertSettings, data: dict[str, Any], sites: dict[str, Site]
) -> AlertSettings:
    """``[[maintenance]]`` windows, kept with the alert settings (the lifecycle reads them
    there). A recurring window is work hours' twin: the same days/start/end rules, in the
    zone of the site its ``match`` names exactly (UTC otherwise)."""
    raw_windows = data.get("maintenance", [])
    if not isinstance(raw_windows, list):
        raise ConfigError("[[maintenance]] must be an array of tables ([[maintenance]])")
    windows = [_maintenance(i, raw, sites) for i, raw in enumerate(raw_windows)]
    seen: set[str] = set()
    for w in windows:
        if w.name in seen:
            raise ConfigError(f"[[maintenance]] ({w.name}): two windows have this name")
        seen.add(w.name)
    return replace(alerts, maintenance=tuple(windows)) if windows else alerts


def _maintenance(i: int, raw: Any, sites: dict[str, Site]) -> MaintenanceWindow:
    where = maintenance_where(i, raw)
    data = _table(raw, where)
    _take(data, MAINTENANCE_KEYS, where)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: needs 'name' (a string)")
    match = check_matchers(data.get("match"), f"{where} match")
    recurring = {"days", "start", "end"} & set(data)
    one_off = {"from", "until"} & set(data)
    if recurring and one_off:
        raise ConfigError(f"{where}: either days/start/end (recurring) or from/until, not both")
    if one_off:
        if one_off != {"from", "until"}:
            raise ConfigError(f"{where}: a one-off window needs both 'from' and 'until'")
        start, end = (
            _instant(data["from"], f"{where} from"),
            _instant(data["until"], f"{where} until"),
        )
        if end <= start:
            raise ConfigError(f"{where}: until must be later than from")
        return MaintenanceWindow(name, match, from_ns=start, until_ns=end)
    if {"start", "end"} - set(data):
        raise ConfigError(f"{where}: needs start and end (HH:MM, recurring) or from and until")
    days = data.get("days", list(DAYS))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise ConfigError(f"{where}: days must be a list of {', '.join(DAYS)}")
    start_t = _hhmm(data["start"], f"{where} start")
    end_t = _hhmm(data["end"], f"{where} end")
    if start_t == end_t:
        raise ConfigError(f"{where}: start and end are equal")
    site_id = match.get("site_id")
    zone = sites[site_id].timezone if site_id in sites and "*" not in site_id else "UTC"
    hours = WorkHours(frozenset(DAYS.index(d) for d in days), start_t, end_t)
    return MaintenanceWindow(name, match, timezone=zone, hours=hours)


def _instant(value: Any, where: str) -> int:
    """A TOML datetime (one without an offset is UTC) or RFC 3339 text -> ns."""
    if isinstance(value, datetime):
        return from_datetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    try:
        return parse_rfc3339(str(value))
    except TimestampError:
        raise ConfigError(
            f"{where} must be a time like 2026-12-24T08:00:00Z, got {value!r}"
        ) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (or ``$TELEMETRY_CONFIG``); no file configured means all defaults."""
    path = path or os.environ.get("TELEMETRY_CONFIG") or None
    if not path:
        return Config()
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
