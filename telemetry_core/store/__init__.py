"""Stores, chosen by one URL (``TELEMETRY_STORE_URL``).

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (embedded default)
* ``influxdb://[user:pass@]host:port/<database>`` (v1-compatible API: InfluxDB 1.x/2.x/3.x)
* ``influxdb2://host:port/<bucket>?org=<org>`` (InfluxDB 2.x via influxdb-client)
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from telemetry_core.store.base import (
    ROLLUP_LEVELS,
    LateWindow,
    Point,
    Store,
    StoreError,
    StoreUnavailable,
    WriteResult,
)

DEFAULT_STORE_URL = "sqlite:///.state/telemetry.db"

__all__ = [
    "DEFAULT_STORE_URL",
    "ROLLUP_LEVELS",
    "LateWindow",
    "Point",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "WriteResult",
    "open_store",
    "redact_url",
]


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def open_store(url: str | None = None) -> Store:
    url = url or os.environ.get("TELEMETRY_STORE_URL") or DEFAULT_STORE_URL
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        from telemetry_core.store.sqlite import SqliteStore

        path = url[len("sqlite://") :]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        if not path:
            raise StoreError("sqlite store URL needs a file path: sqlite:///path/telemetry.db")
        return SqliteStore(path)
    if scheme in ("influxdb", "influxdb2"):
        try:
            from telemetry_core.store import influx
        except ImportError:
            raise StoreError(f"the {scheme}:// store is not available in this build") from None
        return influx.open_influx(url)
    raise StoreError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db, "
        "influxdb://host:8086/<database> or influxdb2://host:8086/<bucket>?org=<org>"
    )
