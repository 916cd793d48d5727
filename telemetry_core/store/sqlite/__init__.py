"""The embedded SQLite store (``sqlite:///path.db``): one file, no server.

``raw.py`` raw points and late marks, ``rollups.py`` the rollup tables, ``retention.py``
retention's primitives, ``recount.py`` the raw reconciliation check's own recount,
``base.py`` the connection and its transaction, ``schema.py`` the layout and safe opening
from many processes."""

from telemetry_core.store.sqlite.raw import SqliteStore

__all__ = ["SqliteStore"]
