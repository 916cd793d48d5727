"""Names and helpers of the InfluxDB data layout, shared by the store's modules.

The layout itself, and why it looks the way it does, is described in
:mod:`telemetry_core.store.influx`.
"""

from __future__ import annotations

from typing import Protocol

from telemetry_core.identifiers import check_field, check_name
from telemetry_core.lineprotocol import FieldKind
from telemetry_core.store.base import ALL, check_level
from telemetry_core.store.influx.http import quote_ident, quote_str

RAW = "raw"
ROLLED_UP = "rolled_up"
LATE = "late_windows"


class Writer(Protocol):
    """What differs between ``influxdb://`` and ``influxdb2://``."""

    #: True when ``delete`` removes an exact time range (InfluxDB 2.x delete API);
    #: otherwise rollup windows are replaced with tombstones (see the layout notes).
    precise_delete: bool

    def setup(self) -> None: ...

    def write(self, body: str) -> None: ...

    def delete(self, measurement: str, start_ns: int, end_ns: int, tags: dict[str, str]) -> bool:
        """Delete ``[start_ns, end_ns)`` of a measurement; False when the server cannot."""
        ...

    def close(self) -> None: ...


def tag_filters(**tags: str | None) -> str:
    """``AND "tag" = 'value'`` clauses, each value validated first (no InfluxQL injection)."""
    out = []
    for key, value in tags.items():
        if value is None:
            continue
        if value == ALL and key in ("site_id", "device_id"):
            pass  # site and portfolio rollup rows
        elif key == "field":
            check_field(value)
        else:
            check_name(value, key)
        out.append(f" AND {quote_ident(key)} = {quote_str(value)}")
    return "".join(out)


ROLLUP_FIELDS: dict[str, FieldKind] = {
    "count": "int", "sum": "float", "min": "float", "max": "float", "first": "float",
    "last": "float", "first_time": "int", "last_time": "int", "is_work_hours": "int",
}  # fmt: skip


def rollup_measurement(level: str) -> str:
    return f"rollup_{check_level(level)}"
