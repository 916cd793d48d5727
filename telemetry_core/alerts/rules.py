"""Alert rules and channels from the TOML config: ``[[thresholds]]``, ``[[anomalies]]``, ``[alerts]``.

Validated once at start into frozen objects. Every error is one line naming the rule and
the key (``[[anomalies]] #2 (power-unusual): unknown key 'zscore'``): a typo must stop the
process at start, never become a rule that silently never fires.

This module must not import ``telemetry_core.config`` at import time (config imports it),
so errors are built through ``_error``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telemetry_core.identifiers import IdentifierError, check_field, check_name

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
ANOMALY_KINDS = ("zscore", "silent", "stuck")
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _error(message: str) -> Exception:
    from telemetry_core.config import ConfigError

    return ConfigError(message)


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


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret_env: str
    min_severity: str = "info"

    channel_kind = "webhook"


@dataclass(frozen=True)
class FileChannel:
    """JSON lines appended to a file: the demo's log channel (our extension)."""

    name: str
    path: str
    min_severity: str = "info"

    channel_kind = "file"


@dataclass(frozen=True)
class AlertSettings:
    cooldown_seconds: float = 900
    max_attempts: int = 10
    backoff_seconds: float = 2
    webhooks: tuple[Webhook, ...] = ()
    files: tuple[FileChannel, ...] = ()
    max_backoff_seconds: float = field(default=300, repr=False)

    def channels(self) -> dict[str, Webhook | FileChannel]:
        return {c.name: c for c in (*self.webhooks, *self.files)}

    def channels_for(self, severity: str) -> list[str]:
        """Names of the channels an event of ``severity`` goes to (min_severity routing)."""
        rank = SEVERITY_RANK[severity]
        return [
            c.name for c in (*self.webhooks, *self.files) if SEVERITY_RANK[c.min_severity] <= rank
        ]

    def backoff_ns(self, attempt: int) -> int:
        """Delay after failed attempt ``attempt`` (1-based): backoff * 2^(attempt-1), capped."""
        seconds = min(self.backoff_seconds * 2 ** min(attempt - 1, 60), self.max_backoff_seconds)
        return round(seconds * 1_000_000_000)


# -- parsing ---------------------------------------------------------------------------
def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _error(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _number(data: Mapping[str, Any], key: str, where: str, default: float | None = None):
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _error(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _int(data: Mapping[str, Any], key: str, where: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _error(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _severity(data: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = data.get(key, default)
    if value not in SEVERITIES:
        raise _error(f"{where}: {key} must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return value


def _where(section: str, i: int, data: Any) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    return f"{section} #{i + 1}" + (f" ({name})" if isinstance(name, str) and name else "")


def _series_scope(data: Mapping[str, Any], where: str) -> None:
    for key in ("measurement", "field"):
        if key not in data:
            raise _error(f"{where}: needs {key!r}")
    try:
        check_name(data["measurement"], "measurement")
        check_field(data["field"])
        for key in ("site_id", "device_id"):
            if data.get(key) is not None:
                check_name(data[key], key)
    except IdentifierError as exc:
        raise _error(f"{where}: {exc}") from None


def _rule_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _RULE_NAME.fullmatch(value):
        raise _error(f"{where}: name {value!r} must match [A-Za-z0-9_.-]{{1,200}}")
    return value


THRESHOLD_KEYS = {
    "name", "measurement", "field", "above", "below", "for_seconds", "severity",
    "site_id", "device_id",
}  # fmt: skip
ANOMALY_KEYS = {
    "name", "kind", "measurement", "field", "z", "baseline_days", "min_history", "windows",
    "severity", "site_id", "device_id",
}  # fmt: skip


def parse_threshold(i: int, raw: Any) -> Threshold:
    where = _where("[[thresholds]]", i, raw)
    if not isinstance(raw, dict):
        raise _error(f"{where} must be a table")
    _check_keys(raw, THRESHOLD_KEYS, where)
    _series_scope(raw, where)
    above, below = _number(raw, "above", where), _number(raw, "below", where)
    if above is None and below is None:
        raise _error(f"{where}: needs 'above' or 'below'")
    if above is not None and below is not None and below >= above:
        raise _error(f"{where}: below ({below}) must be lower than above ({above})")
    for_seconds = _number(raw, "for_seconds", where, 0)
    if for_seconds < 0:
        raise _error(f"{where}: for_seconds must be >= 0, got {raw['for_seconds']!r}")
    return Threshold(
        raw["measurement"],
        raw["field"],
        above=above,
        below=below,
        severity=_severity(raw, "severity", where, "warning"),
        site_id=raw.get("site_id"),
        device_id=raw.get("device_id"),
        name=_rule_name(raw["name"], where) if "name" in raw else "",
        for_seconds=for_seconds,
    )


def parse_anomaly(i: int, raw: Any) -> AnomalyRule:
    where = _where("[[anomalies]]", i, raw)
    if not isinstance(raw, dict):
        raise _error(f"{where} must be a table")
    # Every anomaly key is allowed on every kind (the DESIGN example puts ``windows`` on a
    # zscore rule); keys a kind does not use are ignored, only unknown keys are errors.
    _check_keys(raw, ANOMALY_KEYS, where)
    kind = raw.get("kind")
    if kind not in ANOMALY_KINDS:
        raise _error(f"{where}: kind must be one of {', '.join(ANOMALY_KINDS)}, got {kind!r}")
    _series_scope(raw, where)
    name = raw.get("name") or f"{raw['measurement']}.{raw['field']}.{kind}"
    z = _number(raw, "z", where, 4.0)
    if z <= 0:
        raise _error(f"{where}: z must be > 0, got {raw['z']!r}")
    baseline_days = _int(raw, "baseline_days", where, 28, 1)
    min_history = _int(raw, "min_history", where, 7, 1)
    if min_history > baseline_days:
        raise _error(
            f"{where}: min_history ({min_history}) cannot exceed baseline_days ({baseline_days})"
        )
    return AnomalyRule(
        name=_rule_name(name, where),
        kind=kind,
        measurement=raw["measurement"],
        field=raw["field"],
        z=z,
        baseline_days=baseline_days,
        min_history=min_history,
        windows=_int(raw, "windows", where, 2, 1),
        severity=_severity(raw, "severity", where, "warning"),
        site_id=raw.get("site_id"),
        device_id=raw.get("device_id"),
    )


def _webhook(i: int, raw: Any) -> Webhook:
    where = _where("[[alerts.webhooks]]", i, raw)
    if not isinstance(raw, dict):
        raise _error(f"{where} must be a table")
    _check_keys(raw, {"name", "url", "secret_env", "min_severity"}, where)
    for key in ("name", "url", "secret_env"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _error(f"{where}: needs {key!r} (a string)")
    parts = urlsplit(raw["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(f"{where}: url must be an http:// or https:// URL with a host")
    if not _ENV_NAME.fullmatch(raw["secret_env"]):
        raise _error(f"{where}: secret_env must name an environment variable, e.g. OPS_SECRET")
    return Webhook(
        _rule_name(raw["name"], where),
        raw["url"],
        raw["secret_env"],
        _severity(raw, "min_severity", where, "info"),
    )


def _file_channel(i: int, raw: Any) -> FileChannel:
    where = _where("[[alerts.files]]", i, raw)
    if not isinstance(raw, dict):
        raise _error(f"{where} must be a table")
    _check_keys(raw, {"name", "path", "min_severity"}, where)
    for key in ("name", "path"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _error(f"{where}: needs {key!r} (a string)")
    return FileChannel(
        _rule_name(raw["name"], where), raw["path"], _severity(raw, "min_severity", where, "info")
    )


def _array(data: Mapping[str, Any], key: str, label: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise _error(f"{label} must be an array of tables ({label})")
    return value


def parse_alert_settings(raw: Any) -> AlertSettings:
    if not isinstance(raw, dict):
        raise _error("[alerts] must be a table")
    where = "[alerts]"
    _check_keys(
        raw, {"cooldown_seconds", "max_attempts", "backoff_seconds", "webhooks", "files"}, where
    )
    cooldown = _number(raw, "cooldown_seconds", where, 900)
    backoff = _number(raw, "backoff_seconds", where, 2)
    if cooldown < 0:
        raise _error(f"{where}: cooldown_seconds must be >= 0")
    if backoff <= 0:
        raise _error(f"{where}: backoff_seconds must be > 0")
    webhooks = tuple(
        _webhook(i, w) for i, w in enumerate(_array(raw, "webhooks", "[[alerts.webhooks]]"))
    )
    files = tuple(
        _file_channel(i, f) for i, f in enumerate(_array(raw, "files", "[[alerts.files]]"))
    )
    _unique(
        [c.name for c in (*webhooks, *files)], "channel", "[[alerts.webhooks]]/[[alerts.files]]"
    )
    return AlertSettings(
        cooldown_seconds=cooldown,
        max_attempts=_int(raw, "max_attempts", where, 10, 1),
        backoff_seconds=backoff,
        webhooks=webhooks,
        files=files,
    )


def _unique(names: list[str], what: str, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _error(f"{where}: two {what}s are named {name!r}: give each a unique 'name'")
        seen.add(name)


def parse_rules(
    data: Mapping[str, Any],
) -> tuple[tuple[Threshold, ...], tuple[AnomalyRule, ...], AlertSettings]:
    """The ``thresholds``, ``anomalies`` and ``alerts`` parts of a parsed TOML document."""
    thresholds = tuple(
        parse_threshold(i, raw)
        for i, raw in enumerate(_array(data, "thresholds", "[[thresholds]]"))
    )
    anomalies = tuple(
        parse_anomaly(i, raw) for i, raw in enumerate(_array(data, "anomalies", "[[anomalies]]"))
    )
    # Rule names are part of the alert identity, so they are unique across both sections.
    seen: dict[str, str] = {}
    for section, rules in (("[[thresholds]]", thresholds), ("[[anomalies]]", anomalies)):
        for i, rule in enumerate(rules):
            where = f"{section} #{i + 1} ({rule.name})"
            if rule.name in seen:
                raise _error(
                    f"{where}: name {rule.name!r} is already used by {seen[rule.name]}:"
                    " set a unique 'name'"
                )
            seen[rule.name] = f"{section} #{i + 1}"
    settings = parse_alert_settings(data.get("alerts", {}))
    return thresholds, anomalies, settings
