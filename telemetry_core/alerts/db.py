"""The alerts database: alert state, events, the outbox, delivery attempts, anomalies.

Why SQLite with its own connection: alerts and the outbox need transactions shared by
several processes (every daemon, every Dagster run, the CLI). WAL lets readers run while
one writer commits; the busy timeout makes concurrent writers wait for each other instead
of failing. Where it lives (``alerts_db_path``):

1. ``TELEMETRY_ALERTS_DB`` when set (a path or a ``sqlite:///`` URL);
2. otherwise, when the store is SQLite (``TELEMETRY_STORE_URL=sqlite:///...``, the
   default), the store's own file: same file, own tables (``alert_*``, ``alerts``,
   ``anomalies``), so one file holds everything and one backup covers it;
3. otherwise (an InfluxDB store) ``.state/alerts.db``.

Every process that touches alerts must resolve the same path: give the daemon, the Dagster
code location and the CLI the same environment.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from telemetry_core.store.base import StoreUnavailable
from telemetry_core.store.urls import scheme_of, sqlite_path

DEFAULT_ALERTS_DB = ".state/alerts.db"

SCHEMA = [
    # A counter bumped by every commit that changes alert_state: a process whose cache
    # carries the same epoch knows its cache is exact without reading any state row.
    """CREATE TABLE IF NOT EXISTS alert_meta (
        k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS alert_state (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL,
        status TEXT NOT NULL,          -- ok | pending | firing
        breach_start INTEGER,          -- reading time the pending/firing breach began
        last_time INTEGER,             -- reading (or window) time of the last transition
        alert_id TEXT,                 -- the firing alert
        last_notified_at INTEGER,      -- creation time of the last non-suppressed event
        epoch INTEGER NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS alert_state_epoch ON alert_state (epoch)",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, measurement TEXT NOT NULL,
        site_id TEXT NOT NULL, device_id TEXT NOT NULL, field TEXT NOT NULL, value REAL,
        started_at INTEGER NOT NULL, resolved_at INTEGER,
        suppressed INTEGER NOT NULL, created_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at)",
    """CREATE TABLE IF NOT EXISTS alert_events (
        event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, event TEXT NOT NULL,
        created_at INTEGER NOT NULL, body TEXT NOT NULL, suppressed INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id)",
    """CREATE TABLE IF NOT EXISTS alert_outbox (
        id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, alert_id TEXT NOT NULL,
        event TEXT NOT NULL, channel TEXT NOT NULL,
        status TEXT NOT NULL,          -- pending | delivered | failed | suppressed
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
        claimed_until INTEGER, created_at INTEGER NOT NULL,
        UNIQUE (event_id, channel))""",
    "CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id, channel)",
    """CREATE TABLE IF NOT EXISTS alert_attempts (
        outbox_id INTEGER NOT NULL, attempt INTEGER NOT NULL, at INTEGER NOT NULL,
        outcome TEXT NOT NULL, status INTEGER, error TEXT, duration_ms REAL NOT NULL,
        PRIMARY KEY (outbox_id, attempt)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS anomalies (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL, window_start INTEGER NOT NULL,
        kind TEXT NOT NULL, severity TEXT NOT NULL, value REAL, score REAL,
        detail TEXT NOT NULL, first_seen_at INTEGER NOT NULL, evaluated_at INTEGER NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field, window_start)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS anomalies_window ON anomalies (window_start)",
]


TABLES = frozenset(
    ["alert_meta", "alert_state", "alerts", "alert_events", "alert_outbox", "alert_attempts",
     "anomalies"]
)  # fmt: skip


class AlertsUnavailable(StoreUnavailable):
    """The alerts database is locked or unreachable: retry later (the daemon does not ack)."""


def alerts_db_path(store_url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Where the alerts database lives for this store and environment (module docstring)."""
    from telemetry_core.store import DEFAULT_STORE_URL

    env = os.environ if environ is None else environ
    explicit = env.get("TELEMETRY_ALERTS_DB")
    if explicit:
        return sqlite_path(explicit)
    url = store_url or env.get("TELEMETRY_STORE_URL") or DEFAULT_STORE_URL
    if scheme_of(url) == "sqlite":
        return sqlite_path(url)
    return DEFAULT_ALERTS_DB


class AlertsDB:
    """One connection to the alerts database, safe to share between threads of a process."""

    def __init__(self, path: str, *, busy_timeout_s: float = 10.0, create: bool = True) -> None:
        self.path = path
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
                    for stmt in SCHEMA:
                        conn.execute(stmt)
        except sqlite3.OperationalError as exc:
            raise AlertsUnavailable(f"alerts database {path!r}: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
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
    def read(self) -> Iterator[sqlite3.Connection]:
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

    def __repr__(self) -> str:
        return f"AlertsDB({self.path!r})"


@contextlib.contextmanager
def _translate(path: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise AlertsUnavailable(f"alerts database {path!r}: {exc}") from exc


def open_alerts_db(path: str | None = None, *, store_url: str | None = None) -> AlertsDB:
    """Open (creating tables if needed) the alerts database at ``path`` or where
    ``alerts_db_path(store_url)`` says."""
    return AlertsDB(path or alerts_db_path(store_url))


def epoch(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT v FROM alert_meta WHERE k = 'epoch'").fetchone()
    return row[0] if row else 0


def bump_epoch(conn: sqlite3.Connection) -> int:
    """Inside a write transaction: the epoch this commit's state changes carry."""
    new = epoch(conn) + 1
    conn.execute(
        "INSERT INTO alert_meta (k, v) VALUES ('epoch', ?) ON CONFLICT (k) DO UPDATE SET v = ?",
        (new, new),
    )
    return new
