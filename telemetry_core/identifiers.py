"""Identifier rules: every name that can reach a query is checked here first."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIELD = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class IdentifierError(ValueError):
    """A measurement, site, device or field name outside the allowed alphabet."""


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_field(value: object) -> bool:
    return isinstance(value, str) and _FIELD.fullmatch(value) is not None


def check_name(value: object, what: str) -> str:
    if not is_name(value):
        raise IdentifierError(f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value  # type: ignore[return-value]


def check_field(value: object, what: str = "field") -> str:
    if not is_field(value):
        raise IdentifierError(f"{what} {value!r} must match [A-Za-z0-9_.-]{{1,64}}")
    return value  # type: ignore[return-value]


def check_series_key(key: tuple[str, str, str, str]) -> None:
    """Validate a series key (measurement, site_id, device_id, field) before any store sees it."""
    measurement, site_id, device_id, fld = key
    check_name(measurement, "measurement")
    check_name(site_id, "site_id")
    check_name(device_id, "device_id")
    check_field(fld)
