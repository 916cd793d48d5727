"""Readings validation: a message on a subject -> stored points or reasons.

The bytes become values in ``payload`` (JSON, msgpack, gzip/deflate); the reason codes live
in ``reasons``. Accepted forms:

* one reading: ``{"timestamp": ..., "power_w": 412.5, "energy_kwh": 0.103}``
* a list of readings (each may carry its own timestamp)
* ``{"timestamp": ..., "readings": [{"name": ..., "value": ..., "unit": ..., "quality": ...}]}``

A top-level timestamp applies to every reading that has none. With the header
``Telemetry-Dictionary``, integer keys and names are field names of that dictionary
(``dictionaries``), mapped before anything else is checked. ``site_id`` and
``device_id`` may be repeated in a payload and must then equal the subject's. A reading
is the unit of acceptance: it is stored whole or rejected whole with one reason, so
``stored + rejected`` always equals the readings sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry_core.dictionaries import Dictionary, map_flat, map_item, select
from telemetry_core.identifiers import IdentifierError, is_field
from telemetry_core.payload import decode_body
from telemetry_core.reasons import (
    BAD_IDENTIFIER,
    BAD_PAYLOAD,
    BAD_SUBJECT,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    MISSING_TIMESTAMP,
    NO_FIELDS,
    NON_FINITE,
    NON_NUMERIC,
    SUBJECT_MISMATCH,
    TOO_LARGE,
    TOO_OLD,
    Reject,
)
from telemetry_core.store.base import Point
from telemetry_core.subjects import parse_subject
from telemetry_core.timeutil import NS, TimestampError, parse_timestamp

RESERVED = frozenset(("timestamp", "site_id", "device_id"))
ITEM_META = frozenset(("name", "value", "unit", "quality", "timestamp"))

# Valid subjects and field names repeat message after message: remember them (bounded).
_CACHE_LIMIT = 100_000
_subjects: dict[str, Any] = {}
_good_fields: dict[str, Any] = {}


def _remember(cache: dict[str, Any], key: str, value: Any = True) -> Any:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1024 * 1024  # raw and decompressed payload size
    future_ns: int = 5 * 60 * NS
    max_age_ns: int = 30 * 86400 * NS
    max_readings: int = 100_000


@dataclass(frozen=True)
class Rejection:
    index: int | None  # reading index within the message; None = the whole message
    reason: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "error": self.error}


@dataclass(slots=True)
class Decoded:
    points: list[Point] = field(default_factory=list)
    readings: int = 0  # readings accepted
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if not self.rejections:
            return "stored"
        return "partial" if self.readings else "dead_lettered"


def _value(name: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:
            raise Reject(NON_FINITE, f"value of {name!r} is out of float range") from None
        if not math.isfinite(v):
            raise Reject(NON_FINITE, f"value of {name!r} is {v} (NaN/Inf are rejected)")
        return v
    shown = repr(value)[:40]
    raise Reject(NON_NUMERIC, f"value of {name!r} is {shown}, not a number or boolean")


class _Context:
    __slots__ = ("device", "limits", "measurement", "now", "site")

    def __init__(self, measurement: str, site: str, device: str, now: int, limits: Limits):
        self.measurement, self.site, self.device = measurement, site, device
        self.now, self.limits = now, limits

    def check_owner(self, obj: dict[str, Any]) -> None:
        for key, expected, what in (
            ("site_id", self.site, "site"),
            ("device_id", self.device, "device"),
        ):
            if key in obj and obj[key] != expected:
                raise Reject(
                    SUBJECT_MISMATCH,
                    f"{what} {str(obj[key])[:64]!r} in payload does not match subject {what} {expected!r}",
                )

    def timestamp(self, raw: Any) -> int:
        if raw is None:
            raise Reject(
                MISSING_TIMESTAMP, "reading has no timestamp (and the message none either)"
            )
        if type(raw) is int and 10**17 <= raw < 2**63:
            t = raw  # the common case, nanoseconds: skip the general parser
        else:
            try:
                t = parse_timestamp(raw)
            except TimestampError as exc:
                raise Reject(BAD_TIMESTAMP, str(exc)) from None
        if t > self.now + self.limits.future_ns:
            raise Reject(FUTURE_TIMESTAMP, "timestamp is more than 5 minutes in the future")
        if t < self.now - self.limits.max_age_ns:
            days = self.limits.max_age_ns // (86400 * NS)
            raise Reject(TOO_OLD, f"timestamp is older than the raw retention ({days} days)")
        return t

    def field_name(self, name: Any) -> str:
        if name in _good_fields:
            return name
        if not is_field(name):
            raise Reject(
                BAD_IDENTIFIER, f"field name {str(name)[:80]!r} must match [A-Za-z0-9_.-]{{1,64}}"
            )
        _remember(_good_fields, name)
        return name


def _flat_reading(ctx: _Context, obj: dict[str, Any], inherited: Any) -> list[Point]:
    """The hot path (one call per reading): plain floats and known names skip the checks."""
    reserved = 0
    for key in RESERVED:
        if key in obj:
            reserved += 1
    if reserved > 1 or "timestamp" not in obj:
        ctx.check_owner(obj)
    if len(obj) == reserved:
        raise Reject(NO_FIELDS, "reading has no fields besides timestamp/site_id/device_id")
    t = ctx.timestamp(obj.get("timestamp", inherited))
    m, s, d = ctx.measurement, ctx.site, ctx.device
    good = _good_fields
    out = []
    for k, v in obj.items():
        if k in RESERVED:
            continue
        if k not in good:
            ctx.field_name(k)
        if type(v) is float and v - v == 0.0:  # finite (inf - inf and nan - nan are nan)
            out.append((m, s, d, k, t, v))
        else:
            out.append((m, s, d, k, t, _value(k, v)))
    return out


def _item_reading(ctx: _Context, obj: Any, inherited: Any) -> list[Point]:
    if not isinstance(obj, dict):
        raise Reject(
            BAD_PAYLOAD, f"entry of 'readings' must be an object, got {type(obj).__name__}"
        )
    if "name" not in obj:
        raise Reject(NO_FIELDS, "entry of 'readings' has no 'name'")
    if "value" not in obj:
        raise Reject(NON_NUMERIC, f"entry {str(obj['name'])[:64]!r} of 'readings' has no 'value'")
    name = ctx.field_name(obj["name"])
    t = ctx.timestamp(obj.get("timestamp", inherited))
    return [(ctx.measurement, ctx.site, ctx.device, name, t, _value(name, obj["value"]))]


def _expand(payload: Any) -> list[tuple[str, Any, Any]]:
    """Flatten a payload into (form, reading, inherited timestamp) entries."""
    if isinstance(payload, dict):
        if "readings" in payload:
            items = payload["readings"]
            if not isinstance(items, list):
                raise Reject(BAD_PAYLOAD, "'readings' must be a list")
            return [("item", (payload, item), payload.get("timestamp")) for item in items]
        return [("flat", payload, None)]
    if isinstance(payload, list):
        out: list[tuple[str, Any, Any]] = []
        for entry in payload:
            if isinstance(entry, dict) and "readings" in entry:
                out.extend(_expand(entry))
            else:
                out.append(("flat", entry, None))
        return out
    raise Reject(BAD_PAYLOAD, f"payload must be an object or a list, got {type(payload).__name__}")


def decode_message(
    subject: str,
    data: bytes,
    headers: dict[str, str] | None,
    now_ns: int,
    limits: Limits = Limits(),
    dictionaries: Mapping[str, Dictionary] | None = None,
) -> Decoded:
    """Never raises for bad input: every problem becomes a ``Rejection`` with a reason.

    ``dictionaries`` (the config's ``[dictionaries.<name>]``) serve messages whose header
    ``Telemetry-Dictionary`` names one; without that header they are not looked at."""
    try:
        try:
            sub = _subjects.get(subject) or _remember(_subjects, subject, parse_subject(subject))
        except IdentifierError as exc:
            raise Reject(BAD_SUBJECT, f"subject {subject[:200]!r}: {exc}") from None
        except ValueError as exc:
            raise Reject(BAD_SUBJECT, str(exc)) from None
        ctx = _Context(sub.measurement, sub.site_id, sub.device_id, now_ns, limits)
        dictionary = select(headers, dictionaries or {}) if headers else None
        payload = decode_body(data, headers, limits.max_bytes)
        if dictionary is None and type(payload) is dict and "readings" not in payload:
            # The common case, one flat reading: the general loop below gives the same
            # result, a few hundred nanoseconds later (this runs for every message).
            try:
                return Decoded(_flat_reading(ctx, payload, None), 1, [])
            except Reject as rej:
                return Decoded([], 0, [Rejection(0, rej.reason, rej.error)])
        entries = _expand(payload)
        if not entries:
            raise Reject(NO_FIELDS, "payload holds no readings")
        if len(entries) > limits.max_readings:
            raise Reject(
                TOO_LARGE, f"{len(entries)} readings exceed the limit of {limits.max_readings}"
            )
    except Reject as rej:
        return Decoded([], 0, [Rejection(None, rej.reason, rej.error)])
    result = Decoded()
    for index, (form, entry, inherited) in enumerate(entries):
        try:
            if form == "flat":
                if dictionary is not None:
                    entry = map_flat(entry, dictionary)
                if not isinstance(entry, dict):
                    raise Reject(
                        BAD_PAYLOAD, f"reading must be an object, got {type(entry).__name__}"
                    )
                points = _flat_reading(ctx, entry, inherited)
            else:
                parent, item = entry
                ctx.check_owner(parent)
                if dictionary is not None:
                    item = map_item(item, dictionary)
                points = _item_reading(ctx, item, inherited)
        except Reject as rej:
            result.rejections.append(Rejection(index, rej.reason, rej.error))
            continue
        result.points.extend(points)
        result.readings += 1
    return result
