"""Label matchers, durations, ``[[alerts.inhibit]]`` rules and ``[[maintenance]]`` windows.

Pure values, no database: what silences, maintenance windows and inhibition rules say, and
whether they hold for an alert's labels at a time. ``telemetry_core.alerts.mutes`` decides
with them when a notification is about to be created.

Labels of an alert: ``rule, kind, severity, measurement, site_id, device_id, field`` (an
alert without a device, from a ``scope = "site"`` rule, has ``device_id`` ``""`` here).
A matcher is ``KEY=VALUE``: exact, except that ``*`` in VALUE matches any run of
characters (``meter-*``, ``*``); all matchers of a set must hold (Alertmanager's habit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from telemetry_core.alerts.validate import check_keys, error, where_of
from telemetry_core.timeutil import NS, to_datetime

LABELS = ("rule", "kind", "severity", "measurement", "site_id", "device_id", "field")
_DURATION = re.compile(r"([0-9]+)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Labels = Mapping[str, str]


@lru_cache(maxsize=4096)
def _pattern(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in value.split("*")), re.DOTALL)


def value_matches(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    return _pattern(pattern).fullmatch(value) is not None


def matches(matchers: Mapping[str, str], labels: Labels) -> bool:
    """Every matcher holds for ``labels`` (an empty set matches nothing: no mute of all)."""
    if not matchers:
        return False
    for key, pattern in matchers.items():  # a plain loop: this runs per transition
        value = labels.get(key, "")
        if pattern != value and ("*" not in pattern or _pattern(pattern).fullmatch(value) is None):
            return False
    return True


def check_matchers(raw: Any, where: str) -> dict[str, str]:
    """A TOML table or parsed ``--match`` pairs -> matchers, or a one-line error."""
    if not isinstance(raw, dict) or not raw:
        raise error(f'{where}: needs at least one matcher, e.g. {{ site_id = "site-a" }}')
    for key, value in raw.items():
        if key not in LABELS:
            raise error(f"{where}: unknown label {key!r} (labels: {', '.join(LABELS)})")
        if not isinstance(value, str) or not value:
            raise error(f"{where}: {key} must be a non-empty string, got {value!r}")
    return dict(raw)


def parse_match_args(pairs: list[str]) -> dict[str, str]:
    """``["site_id=site-a", "device_id=meter-*"]`` -> matchers (``--match`` of the CLI)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise error(f"--match {pair!r} must be KEY=VALUE, e.g. site_id=site-a")
        if key in out:
            raise error(f"--match: label {key!r} given twice")
        out[key] = value
    return check_matchers(out, "--match")


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1d`` (or several: ``1h30m``) -> nanoseconds, > 0."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise error(f"duration {text!r} must be like 90s, 30m, 2h or 1d")
    total = sum(int(n) * _UNITS[u] for n, u in parts)
    if total <= 0:
        raise error(f"duration {text!r} must be longer than 0")
    return total * NS


@dataclass(frozen=True)
class InhibitRule:
    """``[[alerts.inhibit]]``: while an alert matching ``source`` fires, alerts matching
    ``target`` whose ``equal`` labels have the same values are muted."""

    source: dict[str, str]
    target: dict[str, str]
    equal: tuple[str, ...] = ()

    def inhibits(self, source: Labels, target: Labels) -> bool:
        return (
            matches(self.source, source)
            and matches(self.target, target)
            and all(source.get(k, "") == target.get(k, "") for k in self.equal)
        )


def parse_inhibit(i: int, raw: Any) -> InhibitRule:
    where = f"[[alerts.inhibit]] #{i + 1}"
    if not isinstance(raw, dict):
        raise error(f"{where} must be a table")
    check_keys(raw, {"source", "target", "equal"}, where)
    equal = raw.get("equal", [])
    if not isinstance(equal, list) or any(e not in LABELS for e in equal):
        raise error(f"{where}: equal must be a list of labels ({', '.join(LABELS)})")
    return InhibitRule(
        check_matchers(raw.get("source"), f"{where} source"),
        check_matchers(raw.get("target"), f"{where} target"),
        tuple(equal),
    )


class Hours(Protocol):
    def contains(self, local: datetime) -> bool: ...


@dataclass(frozen=True)
class MaintenanceWindow:
    """``[[maintenance]]``: recurring (``hours`` in ``timezone``, the work-hours rules:
    half-open, DST-aware, start > end spans midnight) or one-off ``[from_ns, until_ns)``."""

    name: str
    match: dict[str, str]
    timezone: str = "UTC"
    hours: Hours | None = None
    from_ns: int | None = None
    until_ns: int | None = None

    def active(self, now_ns: int) -> bool:
        if self.hours is not None:
            return self.hours.contains(to_datetime(now_ns).astimezone(ZoneInfo(self.timezone)))
        assert self.from_ns is not None and self.until_ns is not None
        return self.from_ns <= now_ns < self.until_ns

    def mutes(self, labels: Labels, now_ns: int) -> bool:
        return matches(self.match, labels) and self.active(now_ns)


MAINTENANCE_KEYS = {"name", "match", "days", "start", "end", "from", "until"}


def maintenance_where(i: int, raw: Any) -> str:
    return where_of("[[maintenance]]", i, raw)
