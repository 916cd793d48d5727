"""The SQLite file's layout, its migrations, and opening it safely from many processes.

Why opening needs care: the daemon(s), every Dagster run and the CLI open the same file,
often at the same moment (a demo start, two daemons under one supervisor). Switching a
fresh file to WAL and creating the tables need a write lock, and SQLite answers some of
those lock conflicts with an immediate "database is locked" instead of waiting on its busy
timeout (it would otherwise risk a deadlock). So opening retries those conflicts with a
short, jittered backoff until ``open_timeout_s``, and takes no write lock at all when the
file is already complete: readers never queue behind the daemon's writes just to open.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from telemetry_core.store.base import ROLLUP_LEVELS

T = TypeVar("T")
OPEN_TIMEOUT_S = 60.0  # longest an opener waits for others to finish setting the file up

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS series (
        id INTEGER PRIMARY KEY,
        measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL,
        UNIQUE (measurement, site_id, device_id, field))""",
    """CREATE TABLE IF NOT EXISTS raw (
        time INTEGER NOT NULL, series_id INTEGER NOT NULL, value REAL NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (time, series_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rolled_up (
        level TEXT NOT NULL, window_start INTEGER NOT NULL, site_id TEXT NOT NULL,
        at INTEGER NOT NULL, PRIMARY KEY (level, window_start, site_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS late_windows (
        window_start INTEGER NOT NULL, site_id TEXT NOT NULL, points INTEGER NOT NULL,
        first_marked_at INTEGER NOT NULL, last_marked_at INTEGER NOT NULL,
        PRIMARY KEY (window_start, site_id)) WITHOUT ROWID""",
] + [
    f"""CREATE TABLE IF NOT EXISTS rollup_{level} (
        window_start INTEGER NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL, count INTEGER NOT NULL,
        sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
        first REAL NOT NULL, last REAL NOT NULL,
        first_time INTEGER NOT NULL, last_time INTEGER NOT NULL, is_work_hours INTEGER,
        PRIMARY KEY (window_start, measurement, site_id, device_id, field)) WITHOUT ROWID"""
    for level in ROLLUP_LEVELS
]
# One series' windows in time order (a device's week, a site's month): without it such a
# read walks every series' rows of the range (see ``SqliteRollups.read_rollups``).
SERIES_INDEXES = [
    f"""CREATE INDEX IF NOT EXISTS rollup_{level}_series
        ON rollup_{level} (measurement, field, site_id, device_id, window_start)"""
    for level in ROLLUP_LEVELS
]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an earlier version up to date (inside the schema txn).

    Raw points written before the stream sequence was kept get sequence 0: any message
    from the stream replaces them, as a fresh write would have. A file from before the
    rollup series indexes gets them, in one pass over each rollup table (about 3 s for a
    month of 200 devices' 15-minute rows; other openers wait on the schema lock meanwhile)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(raw)")}
    if "seq" not in columns:
        conn.execute("ALTER TABLE raw ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    for stmt in SERIES_INDEXES:
        conn.execute(stmt)


TABLES = frozenset(
    ["series", "raw", "rolled_up", "late_windows"] + [f"rollup_{level}" for level in ROLLUP_LEVELS]
)
INDEXES = frozenset(f"rollup_{level}_series" for level in ROLLUP_LEVELS)


def _complete(conn: sqlite3.Connection) -> bool:
    """Every table and index exists and has its current columns (read-only check)."""
    names = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
    }
    if not names >= TABLES | INDEXES:
        return False
    return "seq" in {row[1] for row in conn.execute("PRAGMA table_info(raw)")}


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in SCHEMA:
            conn.execute(stmt)
        migrate(conn)  # checked inside the transaction: another opener may have done it
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _wal(conn: sqlite3.Connection) -> None:
    """WAL is a property of the file: set it once, never again (setting needs a lock)."""
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    if mode.lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_locked(fn: Callable[[], T], deadline: float) -> T:
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: openers do not retry in step
        delay = min(delay * 2, 0.25)


def open_connection(
    path: str, *, busy_timeout_s: float, open_timeout_s: float = OPEN_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection in WAL mode on a file with the current schema, however many other
    processes open the same file at the same time. Raises ``sqlite3.OperationalError``
    only if the file stays locked for ``open_timeout_s`` (or for other I/O errors)."""
    deadline = time.monotonic() + open_timeout_s
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        _retry_locked(lambda: _wal(conn), deadline)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        conn.execute("PRAGMA temp_store=MEMORY")
        if not _retry_locked(lambda: _complete(conn), deadline):
            _retry_locked(lambda: _create(conn), deadline)
    except BaseException:
        conn.close()
        raise
    return conn
