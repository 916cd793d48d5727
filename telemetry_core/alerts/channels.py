"""``[alerts]``: delivery settings, the channels events go to (webhooks, JSON-lines files)
and the inhibition rules (``[[alerts.inhibit]]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telemetry_core.alerts.matchers import InhibitRule, MaintenanceWindow, parse_inhibit
from telemetry_core.alerts.validate import (
    ENV_NAME,
    SEVERITY_RANK,
    array,
    check_keys,
    error,
    integer,
    number,
    rule_name,
    severity_of,
    unique,
    where_of,
)


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
    inhibit: tuple[InhibitRule, ...] = ()  # [[alerts.inhibit]]
    maintenance: tuple[MaintenanceWindow, ...] = ()  # [[maintenance]], set by config.py

    def all_channels(self) -> tuple[Webhook | FileChannel, ...]:
        return (*self.webhooks, *self.files)

    def channels(self) -> dict[str, Webhook | FileChannel]:
        return {c.name: c for c in self.all_channels()}

    def channels_for(self, severity: str) -> list[str]:
        """Names of the channels an event of ``severity`` goes to (min_severity routing)."""
        rank = SEVERITY_RANK[severity]
        return [c.name for c in self.all_channels() if SEVERITY_RANK[c.min_severity] <= rank]

    def backoff_ns(self, attempt: int) -> int:
        """Delay after failed attempt ``attempt`` (1-based): backoff * 2^(attempt-1), capped."""
        seconds = min(self.backoff_seconds * 2 ** min(attempt - 1, 60), self.max_backoff_seconds)
        return round(seconds * 1_000_000_000)


def _webhook(i: int, raw: Any) -> Webhook:
    where = where_of("[[alerts.webhooks]]", i, raw)
    if not isinstance(raw, dict):
        raise error(f"{where} must be a table")
    check_keys(raw, {"name", "url", "secret_env", "min_severity"}, where)
    for key in ("name", "url", "secret_env"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise error(f"{where}: needs {key!r} (a string)")
    parts = urlsplit(raw["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise error(f"{where}: url must be an http:// or https:// URL with a host")
    if not ENV_NAME.fullmatch(raw["secret_env"]):
        raise error(f"{where}: secret_env must name an environment variable, e.g. OPS_SECRET")
    return Webhook(
        rule_name(raw["name"], where),
        raw["url"],
        raw["secret_env"],
        severity_of(raw, "min_severity", where, "info"),
    )


def _file_channel(i: int, raw: Any) -> FileChannel:
    where = where_of("[[alerts.files]]", i, raw)
    if not isinstance(raw, dict):
        raise error(f"{where} must be a table")
    check_keys(raw, {"name", "path", "min_severity"}, where)
    for key in ("name", "path"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise error(f"{where}: needs {key!r} (a string)")
    return FileChannel(
        rule_name(raw["name"], where), raw["path"], severity_of(raw, "min_severity", where, "info")
    )


def parse_alert_settings(raw: Any) -> AlertSettings:
    if not isinstance(raw, dict):
        raise error("[alerts] must be a table")
    where = "[alerts]"
    check_keys(
        raw,
        {"cooldown_seconds", "max_attempts", "backoff_seconds", "webhooks", "files", "inhibit"},
        where,
    )
    cooldown = number(raw, "cooldown_seconds", where, 900)
    backoff = number(raw, "backoff_seconds", where, 2)
    if cooldown < 0:
        raise error(f"{where}: cooldown_seconds must be >= 0")
    if backoff <= 0:
        raise error(f"{where}: backoff_seconds must be > 0")
    webhooks = tuple(
        _webhook(i, w) for i, w in enumerate(array(raw, "webhooks", "[[alerts.webhooks]]"))
    )
    files = tuple(
        _file_channel(i, f) for i, f in enumerate(array(raw, "files", "[[alerts.files]]"))
    )
    channels: tuple[Webhook | FileChannel, ...] = (*webhooks, *files)
    unique([c.name for c in channels], "channel", "[[alerts.webhooks]]/[[alerts.files]]")
    return AlertSettings(
        cooldown_seconds=cooldown,
        max_attempts=integer(raw, "max_attempts", where, 10, 1),
        backoff_seconds=backoff,
        webhooks=webhooks,
        files=files,
        inhibit=tuple(
            parse_inhibit(i, r) for i, r in enumerate(array(raw, "inhibit", "[[alerts.inhibit]]"))
        ),
    )
