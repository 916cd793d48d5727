"""Validation helpers shared by the rule and channel parsers: one-line errors naming the key.

``telemetry_core.config`` imports the alert rules, so nothing here imports it at import
time: errors are built through ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from telemetry_core.errors import ConfigError
from telemetry_core.identifiers import IdentifierError, check_field, check_name

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def error(message: str) -> Exception:
    return ConfigError(message)


def check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def number(data: Mapping[str, Any], key: str, where: str, default: float | None = None):
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise error(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def integer(data: Mapping[str, Any], key: str, where: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def severity_of(data: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = data.get(key, default)
    if value not in SEVERITIES:
        raise error(f"{where}: {key} must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return value


def where_of(section: str, i: int, data: Any) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    return f"{section} #{i + 1}" + (f" ({name})" if isinstance(name, str) and name else "")


def series_scope(data: Mapping[str, Any], where: str) -> None:
    for key in ("measurement", "field"):
        if key not in data:
            raise error(f"{where}: needs {key!r}")
    try:
        check_name(data["measurement"], "measurement")
        check_field(data["field"])
        for key in ("site_id", "device_id"):
            if data.get(key) is not None:
                check_name(data[key], key)
    except IdentifierError as exc:
        raise error(f"{where}: {exc}") from None


def rule_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not RULE_NAME.fullmatch(value):
        raise error(f"{where}: name {value!r} must match [A-Za-z0-9_.-]{{1,200}}")
    return value


def array(data: Mapping[str, Any], key: str, label: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise error(f"{label} must be an array of tables ({label})")
    return value


def unique(names: list[str], what: str, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise error(f"{where}: two {what}s are named {name!r}: give each a unique 'name'")
        seen.add(name)
