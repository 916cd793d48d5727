"""Alert rules from the TOML config: ``[[thresholds]]`` and ``[[anomalies]]`` (and, through
``channels``, ``[alerts]``).

Validated once at start into frozen objects. Every error is one line naming the rule and
the key (``[[anomalies]] #2 (power-unusual): unknown key 'zscore'``): a typo must stop the
process at start, never become a rule that silently never fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry_core.alerts.channels import (
    AlertSettings,
    FileChannel,
    Webhook,
    parse_alert_settings,
)
from telemetry_core.alerts.validate import (
    SEVERITIES,
    SEVERITY_RANK,
    array,
    check_keys,
    error,
    integer,
    number,
    rule_name,
    series_scope,
    severity_of,
    where_of,
)

__all__ = [
    "ANOMALY_KINDS",
    "SEVERITIES",
    "SEVERITY_RANK",
    "AlertSettings",
    "AnomalyRule",
    "FileChannel",
    "Threshold",
    "Webhook",
    "parse_rules",
]

ANOMALY_KINDS = ("zscore", "silent", "stuck")


@dataclass(frozen=True)
class Threshold:
    """A bound checked by the daemon on every reading of (measurement, field)."""

    measurement: str
    field: str
    above: float | None = None
    below: float | None = None
    severity: str = "warning"
    site_id: str | None = None
    device_id: str | None = None
    name: str = ""  # "" -> "<measurement>.<field>.above|below|outside"
    for_seconds: float = 0

    kind = "threshold"

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", default_threshold_name(self))

    @property
    def for_ns(self) -> int:
        return round(self.for_seconds * 1_000_000_000)

    def matches(self, measurement: str, site_id: str, device_id: str, fld: str) -> bool:
        return (
            self.measurement == measurement
            and self.field == fld
            and (self.site_id is None or self.site_id == site_id)
            and (self.device_id is None or self.device_id == device_id)
        )

    def breached(self, value: float) -> bool:
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )


def default_threshold_name(t: Threshold) -> str:
    side = (
        "outside"
        if t.above is not None and t.below is not None
        else ("above" if t.above is not None else "below")
    )
    return f"{t.measurement}.{t.field}.{side}"


@dataclass(frozen=True)
class AnomalyRule:
    """A statistical (zscore) or health (silent, stuck) rule evaluated per 15-minute window."""

    name: str
    kind: str
    measurement: str
    field: str
    z: float = 4.0
    baseline_days: int = 28
    min_history: int = 7
    windows: int = 2
    severity: str = "warning"
    site_id: str | None = None
    device_id: str | None = None
    scope: str = "device"  # silent: "site" -> one alert (no device) when no device reported


# -- parsing ---------------------------------------------------------------------------
THRESHOLD_KEYS = {
    "name", "measurement", "field", "above", "below", "for_seconds", "severity",
    "site_id", "device_id",
}  # fmt: skip
ANOMALY_KEYS = {
    "name", "kind", "measurement", "field", "z", "baseline_days", "min_history", "windows",
    "severity", "site_id", "device_id", "scope",
}  # fmt: skip
SCOPES = ("device", "site")


def parse_threshold(i: int, raw: Any) -> Threshold:
    where = where_of("[[thresholds]]", i, raw)
    if not isinstance(raw, dict):
        raise error(f"{where} must be a table")
    check_keys(raw, THRESHOLD_KEYS, where)
    series_scope(raw, where)
    above, below = number(raw, "above", where), number(raw, "below", where)
    if above is None and below is None:
        raise error(f"{where}: needs 'above' or 'below'")
    if above is not None and below is not None and below >= above:
        raise error(f"{where}: below ({below}) must be lower than above ({above})")
    for_seconds = number(raw, "for_seconds", where, 0)
    if for_seconds < 0:
        raise error(f"{where}: for_seconds must be >= 0, got {raw['for_seconds']!r}")
    return Threshold(
        raw["measurement"],
        raw["field"],
        above=above,
        below=below,
        severity=severity_of(raw, "severity", where, "warning"),
        site_id=raw.get("site_id"),
        device_id=raw.get("device_id"),
        name=rule_name(raw["name"], where) if "name" in raw else "",
        for_seconds=for_seconds,
    )


def parse_anomaly(i: int, raw: Any) -> AnomalyRule:
    where = where_of("[[anomalies]]", i, raw)
    if not isinstance(raw, dict):
        raise error(f"{where} must be a table")
    # Every anomaly key is allowed on every kind (the DESIGN example puts ``windows`` on a
    # zscore rule); keys a kind does not use are ignored, only unknown keys are errors.
    check_keys(raw, ANOMALY_KEYS, where)
    kind = raw.get("kind")
    if kind not in ANOMALY_KINDS:
        raise error(f"{where}: kind must be one of {', '.join(ANOMALY_KINDS)}, got {kind!r}")
    series_scope(raw, where)
    scope = raw.get("scope", "device")
    if scope not in SCOPES:
        raise error(f"{where}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if scope == "site" and kind != "silent":
        raise error(f'{where}: scope = "site" is for kind = "silent" only')
    if scope == "site" and raw.get("device_id") is not None:
        raise error(f'{where}: a scope = "site" rule has no device_id')
    name = raw.get("name") or f"{raw['measurement']}.{raw['field']}.{kind}"
    z = number(raw, "z", where, 4.0)
    if z <= 0:
        raise error(f"{where}: z must be > 0, got {raw['z']!r}")
    baseline_days = integer(raw, "baseline_days", where, 28, 1)
    min_history = integer(raw, "min_history", where, 7, 1)
    if min_history > baseline_days:
        raise error(
            f"{where}: min_history ({min_history}) cannot exceed baseline_days ({baseline_days})"
        )
    return AnomalyRule(
        name=rule_name(name, where),
        kind=kind,
        measurement=raw["measurement"],
        field=raw["field"],
        z=z,
        baseline_days=baseline_days,
        min_history=min_history,
        windows=integer(raw, "windows", where, 2, 1),
        severity=severity_of(raw, "severity", where, "warning"),
        site_id=raw.get("site_id"),
        device_id=raw.get("device_id"),
        scope=scope,
    )


def parse_rules(
    data: Mapping[str, Any],
) -> tuple[tuple[Threshold, ...], tuple[AnomalyRule, ...], AlertSettings]:
    """The ``thresholds``, ``anomalies`` and ``alerts`` parts of a parsed TOML document."""
    thresholds = tuple(
        parse_threshold(i, raw) for i, raw in enumerate(array(data, "thresholds", "[[thresholds]]"))
    )
    anomalies = tuple(
        parse_anomaly(i, raw) for i, raw in enumerate(array(data, "anomalies", "[[anomalies]]"))
    )
    # Rule names are part of the alert identity, so they are unique across both sections.
    seen: dict[str, str] = {}
    sections: tuple[tuple[str, tuple[Threshold | AnomalyRule, ...]], ...] = (
        ("[[thresholds]]", thresholds),
        ("[[anomalies]]", anomalies),
    )
    for section, rules in sections:
        for i, rule in enumerate(rules):
            where = f"{section} #{i + 1} ({rule.name})"
            if rule.name in seen:
                raise error(
                    f"{where}: name {rule.name!r} is already used by {seen[rule.name]}:"
                    " set a unique 'name'"
                )
            seen[rule.name] = f"{section} #{i + 1}"
    settings = parse_alert_settings(data.get("alerts", {}))
    return thresholds, anomalies, settings
