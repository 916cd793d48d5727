"""Stores, chosen by one URL (``TELEMETRY_STORE_URL``).

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (embedded default)
* ``influxdb://[user:pass@]host:port/<database>`` (v1-compatible API: InfluxDB 1.x/2.x/3.x)
* ``influxdb2://host:port/<bucket>?org=<org>`` (InfluxDB 2.x via influxdb-client)
"""

from __future__ import annotations

import os
import re

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


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]*)@")
_SECRET_PARAM = re.compile(r"(?P<key>[?&](?:token|password|pass|secret|auth)[^=&]*=)[^&,\s]*", re.I)


def redact_url(url: str) -> str:
    """The URL, or every URL of a comma-separated list, fit for a log line: passwords
    become ``***`` (the user name stays, it helps), a user part without a password is
    taken for a token (NATS reads ``nats://TOKEN@host`` so) and hidden whole, and query
    parameters that look like credentials are hidden too. Parsing is by pattern, not by
    ``urlsplit``, so a malformed URL is redacted as well, never echoed."""

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _secret = m["userinfo"].partition(":")
        return f"{m['scheme']}{user}:***@" if sep else f"{m['scheme']}***@"

    return _SECRET_PARAM.sub(r"\g<key>***", _USERINFO.sub(userinfo, url))


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
