"""Stores, chosen by one URL (``TELEMETRY_STORE_URL``).

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (embedded default)
* ``postgresql://user[:password]@host[:port]/<database>`` (also ``postgres://``; the
  production store)
* ``influxdb://[user:pass@]host:port/<database>`` (v1-compatible API: InfluxDB 1.x/2.x/3.x)
* ``influxdb2://host:port/<bucket>?org=<org>`` (InfluxDB 2.x via influxdb-client)

Each backend is a package of its own (``sqlite/``, ``postgres/``, ``influx/``) behind the
protocol in ``base.py``; URLs are parsed in ``urls.py`` only.
"""

from __future__ import annotations

import os

from telemetry_core.store.base import (
    ROLLUP_LEVELS,
    LateWindow,
    Point,
    Store,
    StoreError,
    StoreRefused,
    StoreUnavailable,
    WriteResult,
)
from telemetry_core.store.urls import (
    DEFAULT_STORE_URL,
    redact_url,
    sqlite_path,
    store_backend,
)

__all__ = [
    "DEFAULT_STORE_URL",
    "ROLLUP_LEVELS",
    "LateWindow",
    "Point",
    "Store",
    "StoreError",
    "StoreRefused",
    "StoreUnavailable",
    "WriteResult",
    "check_retention",
    "open_store",
    "redact_url",
    "store_backend",
]


def open_store(url: str | None = None) -> Store:
    url = url or os.environ.get("TELEMETRY_STORE_URL") or DEFAULT_STORE_URL
    backend = store_backend(url)
    if backend == "sqlite":
        from telemetry_core.store.sqlite import SqliteStore

        path = sqlite_path(url)
        if not path:
            raise StoreError("sqlite store URL needs a file path: sqlite:///path/telemetry.db")
        return SqliteStore(path)
    if backend == "postgresql":
        try:
            from telemetry_core.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "the postgresql:// store needs psycopg 3 (pip install 'psycopg[binary]')"
            ) from None
        return PostgresStore(url)
    try:
        from telemetry_core.store import influx
    except ImportError:
        raise StoreError(
            f"the {url.split('://')[0]}:// store is not available in this build"
        ) from None
    return influx.open_influx(url)


def check_retention(url: str | None = None) -> None:
    """Raise a one-line ``StoreError`` when ``[retention]`` cannot delete on this store's
    server (``influxdb://`` on InfluxDB 3.x, or 2.x without ``?org=`` or a token). The
    Dagster code location calls it when it loads, so the problem shows then, not in the
    daily job. Other stores always can (and are not opened); an unreachable server is
    not judged."""
    url = url or os.environ.get("TELEMETRY_STORE_URL") or DEFAULT_STORE_URL
    if store_backend(url) != "influxdb" or url.split("://", 1)[0].lower() != "influxdb":
        return  # influxdb2:// deletes through the delete API, always there
    store = open_store(url)
    try:
        check = getattr(store, "check_retention", None)
        if check is not None:
            check()
    finally:
        store.close()
