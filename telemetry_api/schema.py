"""What the OpenAPI document says: parameter patterns, response models, error answers.

The app (``app.py``) declares its operations with these; schemathesis reads them back from
``/openapi.json`` and holds the server to them, so a pattern here is a promise: a time that
matches ``TIME_PATTERN`` is never refused, and nothing else is accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Query
from pydantic import BaseModel, Field

from telemetry_core.timeutil import TIME_EXAMPLES, TIME_PATTERN

NAME = r"^[A-Za-z0-9_-]{1,64}$"
FIELD = r"^[A-Za-z0-9_.-]{1,64}$"
DESCRIPTION = """Read-only access to building telemetry: raw points and validated 15-minute,
hourly, site and portfolio rollups. Times are RFC 3339 (`2026-11-20T07:00:00Z`), a date
(`2026-11-20`, its UTC midnight), `now`, or relative to now (`-8h`, `-7d`; units ns us µs ms s
m h d w), years 1678-2261; each time parameter's `pattern` is exactly what the server accepts.
Windows are half-open `[start, end)` and labelled by their start.

Rules between parameters (OpenAPI cannot express them; breaking one is a 400 naming the
parameter): `end` after `start`; `device` and `resolution=raw` only at scope `device`;
`site` and `work_hours` not at scope `portfolio`.

A store that cannot be read answers 503 with `Retry-After` (seconds)."""
RETRY_AFTER_S = 5  # a locked SQLite file or a restarting InfluxDB is back within seconds
TIME_HELP = (
    "RFC 3339 (2026-11-20T07:00:00Z), a date (2026-11-20), `now`, or relative to now"
    " (-8h, -30m, -7d)"
)
TIME_PARAMETERS = ("start", "end", "since")


def time_query(default: str | None, description: str) -> Any:
    """A time parameter: the accepted forms as a pattern the server enforces (so a client
    that follows the schema is never refused for it), with examples."""
    return Query(
        pattern=TIME_PATTERN,
        description=f"{TIME_HELP}. {description}",
        examples=[default, *TIME_EXAMPLES]
        if default and default not in TIME_EXAMPLES
        else list(TIME_EXAMPLES),
    )


class RawPoint(BaseModel):
    time: str = Field(description="RFC 3339 UTC, every stored digit")
    measurement: str
    site_id: str
    device_id: str
    field: str
    value: float


class RollupPoint(BaseModel):
    window_start: str
    window_end: str
    measurement: str
    site_id: str | None = Field(description="null at portfolio scope")
    device_id: str | None = Field(None, description="device scope only")
    field: str
    count: int
    sum: float
    min: float
    max: float
    mean: float
    first: float
    last: float
    is_work_hours: bool | None = Field(None, description="absent at portfolio scope")
    value: float = Field(description="headline: sum for delta fields, mean otherwise")


class SeriesResponse(BaseModel):
    resolution: Literal["raw", "15m", "1h"]
    scope: Literal["device", "site", "portfolio"]
    points: list[RawPoint | RollupPoint]


class TopPoint(BaseModel):
    site_id: str
    device_id: str | None = Field(None, description="by=device only")
    value: float


class TopResponse(BaseModel):
    by: Literal["site", "device"]
    points: list[TopPoint]


class ErrorResponse(BaseModel):
    error: str
    parameter: str | None = Field(None, description="the bad parameter, when one is to blame")


class DeliveryOut(BaseModel):
    webhook: str
    event: Literal["firing", "resolved"]
    attempt: int
    at: str | None
    outcome: Literal["delivered", "failed", "pending", "suppressed"]
    status: int | None
    error: str | None
    reason: str | None = Field(
        None,
        description="suppressed entries only: cooldown, silence <silence_id>, "
        "maintenance <name> or inhibited by <alert_id>",
    )


class AlertOut(BaseModel):
    alert_id: str
    rule: str
    kind: Literal["threshold", "zscore", "silent", "stuck"]
    severity: Literal["info", "warning", "critical"]
    state: Literal["firing", "resolved"]
    measurement: str
    site_id: str
    device_id: str | None = Field(description="null for a site-level (scope = site) alert")
    field: str
    value: float | None
    started_at: str | None
    resolved_at: str | None
    deliveries: list[DeliveryOut]


class SilenceOut(BaseModel):
    silence_id: str
    matchers: dict[str, str]
    starts_at: str
    ends_at: str
    comment: str
    created_by: str
    state: Literal["active", "pending", "expired"]


class HealthResponse(BaseModel):
    status: Literal["ok", "error"]
    store: dict[str, Any]


RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before asking again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "a bad parameter, named"},
    503: {
        "model": ErrorResponse,
        "description": "the store is unavailable (down, locked or unreadable); retry later",
        "headers": RETRY_AFTER,
    },
}
