"""The alerts database: alert state, events, the outbox, delivery attempts, anomalies, silences.

Why a relational database of its own: alerts and the outbox need transactions shared by
several processes (every daemon, every Dagster run, the CLI). Where it lives
(``alerts_db_url``, the first that applies):

1. ``TELEMETRY_ALERTS_DB`` when set: a path, a ``sqlite:///`` URL or a ``postgresql://``
   (``postgres://``) URL;
2. a SQLite store (``TELEMETRY_STORE_URL=sqlite:///...``, the default): the store's own
   file, own tables (``alert_*``, ``alerts``, ``anomalies``), one file, one backup;
3. a PostgreSQL store: the same database, so the daemon and Dagster share alerts, the
   outbox and the store's late-window marks wherever they run;
4. otherwise (an InfluxDB store) ``.state/alerts.db``, a local file: past one machine
   (the daemon and Dagster on different hosts) it must be PostgreSQL, through
   ``TELEMETRY_ALERTS_DB``.

Every process that touches alerts must resolve the same location: give the daemon, the
Dagster code location and the CLI the same environment.

Two backends behind one surface (``AlertsDB``): ``write()`` and ``read()`` yield a
connection whose ``execute``/``executemany`` take ``?`` placeholders and return cursors with
``fetchone``/``fetchall``/``rowcount``, so the SQL of the callers (written to run on both:
``ON CONFLICT ... DO UPDATE``, no two-argument ``max()``) does not know which one it talks
to. SQLite: WAL lets readers run while one writer commits, ``BEGIN IMMEDIATE`` queues
writers. PostgreSQL: ``telemetry_core.alerts.postgres`` (why an advisory lock, there).
A locked or unreachable database is ``AlertsUnavailable``: an outage, retried.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from telemetry_core.alerts import schema
from telemetry_core.store.base import StoreError, StoreUnavailable
from telemetry_core.store.urls import (
    DEFAULT_STORE_URL,
    SCHEMES,
    redact_url,
    scheme_of,
    sqlite_path,
    store_backend,
)

DEFAULT_ALERTS_DB = ".state/alerts.db"
TABLES = schema.TABLES
SCHEMA = schema.SQLITE  # the SQLite DDL (``schema.POSTGRESQL`` for the other backend)

ALERTS_DB_USAGE = "use a path, sqlite:///path.db or postgresql://user@host:5432/<database>"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What ``AlertsDB.write()``/``read()`` yield: sqlite3's calls, ``?`` placeholders."""

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Any, /) -> Cursor: ...


class AlertsUnavailable(StoreUnavailable):
    """The alerts database is locked or unreachable: retry later (the daemon does not ack)."""


def is_postgres(location: str) -> bool:
    return SCHEMES.get(scheme_of(location)) == "postgresql"


def sqlite_url(path: str) -> str:
    """``rel.db`` -> ``sqlite:///rel.db``, ``/abs.db`` -> ``sqlite:////abs.db``."""
    return f"sqlite:///{path}"


DEFAULT_ALERTS_URL = sqlite_url(DEFAULT_ALERTS_DB)


def alerts_db_url(store_url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Where the alerts database lives for this store and environment (module docstring):
    a ``sqlite:///`` or ``postgresql://`` URL. A store URL or ``TELEMETRY_ALERTS_DB`` of
    another kind is a ``StoreError`` naming the setting (the URL redacted)."""
    env = os.environ if environ is None else environ
    explicit = env.get("TELEMETRY_ALERTS_DB")
    if explicit:
        kind = scheme_of(explicit)
        if kind == "" or kind == "sqlite":
            return sqlite_url(sqlite_path(explicit))
        if is_postgres(explicit):
            return explicit
        raise StoreError(
            f"unsupported alerts database {redact_url(explicit)!r} in TELEMETRY_ALERTS_DB: "
            f"{ALERTS_DB_USAGE}"
        )
    url = store_url or env.get("TELEMETRY_STORE_URL") or DEFAULT_STORE_URL
    backend = store_backend(url)
    if backend == "sqlite":
        return sqlite_url(sqlite_path(url))
    if backend == "postgresql":
        return url
    return DEFAULT_ALERTS_URL


class AlertsDB:
    """One connection to the alerts database, safe to share between threads of a process.

    ``AlertsDB(location)`` opens the backend the location names (a path or ``sqlite:///``
    URL: SQLite; ``postgresql://``: PostgreSQL), creating the tables unless ``create`` is
    false. ``dialect`` says which, for the rare caller that must know."""

    dialect: str
    location: str

    def __new__(cls, location: str, **kwargs: Any) -> AlertsDB:
        if cls is AlertsDB:
            if is_postgres(location):
                from telemetry_core.alerts.postgres import PostgresAlertsDB

                cls = PostgresAlertsDB
            else:
                cls = SqliteAlertsDB
        return super().__new__(cls)

    def write(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def has_tables(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"AlertsDB({redact_url(self.location)!r})"


class SqliteAlertsDB(AlertsDB):
    dialect = "sqlite"

    def __init__(
        self,
        location: str,
        *,
        busy_timeout_s: float = 10.0,
        create: bool = True,
        lazy: bool = False,  # a local file opens at once: accepted for the common signature
    ) -> None:
        path = sqlite_path(location)
        self.location = self.path = path
        if create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            (mode,) = self._conn.execute("PRAGMA journal_mode").fetchone()
            if mode.lower() != "wal":  # a property of the file: set once (it takes a lock)
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            if create and not self.has_tables():  # most opens: no write lock needed
                with self.write() as conn:
                    for stmt in schema.SQLITE:
                        conn.execute(stmt)
        except sqlite3.OperationalError as exc:
            raise AlertsUnavailable(f"alerts database {path!r}: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE: concurrent writers queue, never interleave)."""
        with self._lock, _translate(self.path):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read snapshot over several statements."""
        with self._lock, _translate(self.path):
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def has_tables(self) -> bool:
        with self.read() as conn:
            names = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        return names >= TABLES

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@contextlib.contextmanager
def _translate(path: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise AlertsUnavailable(f"alerts database {path!r}: {exc}") from exc


def open_alerts_db(
    location: str | None = None, *, store_url: str | None = None, **kwargs: Any
) -> AlertsDB:
    """Open (creating tables if needed) the alerts database at ``location`` (a path or
    URL) or where ``alerts_db_url(store_url)`` says."""
    return AlertsDB(location or alerts_db_url(store_url), **kwargs)


def epoch(conn: Connection) -> int:
    row = conn.execute("SELECT v FROM alert_meta WHERE k = 'epoch'").fetchone()
    return row[0] if row else 0


def bump_epoch(conn: Connection) -> int:
    """Inside a write transaction: the epoch this commit's state changes carry."""
    new = epoch(conn) + 1
    conn.execute(
        "INSERT INTO alert_meta (k, v) VALUES ('epoch', ?) ON CONFLICT (k) DO UPDATE SET v = ?",
        (new, new),
    )
    return new
