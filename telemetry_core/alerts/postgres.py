"""The alerts database on PostgreSQL (psycopg 3): the same tables and semantics as SQLite.

Why an advisory lock around every write: the threshold engine caches key states and
trusts the cache while the alert epoch is unchanged, and the outbox claim reads the next
due entry and then marks it claimed. Both are read-then-write and were written for
SQLite, where ``BEGIN IMMEDIATE`` lets one writer at a time in. Under PostgreSQL's default
READ COMMITTED two transactions could read the same epoch, or claim the same entry, and
both commit. So each write transaction starts with ``pg_advisory_xact_lock(LOCK_KEY)``:
writers queue exactly as they do on SQLite, the lock goes with the commit or rollback (a
crashed process cannot leave it held), and, because the transaction stays READ COMMITTED,
every statement after the lock sees everything committed before it was granted
(REPEATABLE READ would have taken its snapshot before the wait). Writes are a few short
statements (the engine's transitions, one claim, one attempt record; sends happen outside
any transaction), so one queue costs little.

Reads (``has_due``, listings, the engine's epoch check) take no lock: REPEATABLE READ,
READ ONLY gives them one consistent snapshot over several statements, as a SQLite read
transaction does.

Outages: a refused or lost connection, a server restart, a lock wait over
``busy_timeout_s`` (``lock_timeout``) are ``AlertsUnavailable`` (a ``StoreUnavailable``: the
daemon backs off and acknowledges nothing). A broken connection is dropped and the next use
connects again; a connection found dead when a transaction begins (the server restarted
while it was idle) is replaced at once, so an idle restart costs no failed batch.

Schema creation (when opened, or on first use with ``lazy=True``, as the daemon opens it)
holds the same lock, so processes starting together create the tables once (``CREATE
TABLE IF NOT EXISTS`` alone races on PostgreSQL's catalogs).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from telemetry_core.alerts import schema
from telemetry_core.alerts.db import AlertsDB, AlertsUnavailable, Connection, Cursor
from telemetry_core.store.urls import redact_url

#: the advisory lock every alerts write transaction holds ("alerts" in ASCII as a bigint; a
#: store sharing the database must not use this key for its own locks)
LOCK_KEY = int.from_bytes(b"alerts", "big")
IDLE = TransactionStatus.IDLE


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """sqlite's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled), leaving
    string literals, quoted identifiers and ``--`` comments alone."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            end = n - 1 if end < 0 else end
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        out.append("%s" if c == "?" else "%%" if c == "%" else c)
        i += 1
    return "".join(out)


class PgConnection:
    """A psycopg connection with sqlite3's calling convention (``?`` placeholders, a cursor
    back from ``execute``), so the callers' SQL runs unchanged."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(to_pyformat(sql), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self._conn.cursor()
        rows = [tuple(p) for p in params]
        if rows:  # sqlite3 accepts an empty batch; so do we
            cur.executemany(to_pyformat(sql), rows)
        return cur


class PostgresAlertsDB(AlertsDB):
    dialect = "postgresql"

    def __init__(
        self,
        location: str,
        *,
        busy_timeout_s: float = 10.0,
        create: bool = True,
        lazy: bool = False,
        connect_timeout_s: int = 10,
    ) -> None:
        """``lazy``: connect (and create the tables) on first use rather than now, so a
        daemon started while the server is down runs and treats it as an outage."""
        self.location = location
        self.busy_timeout_s = busy_timeout_s
        self._params: dict[str, Any] = {
            "application_name": "telemetry-alerts",
            "connect_timeout": max(2, connect_timeout_s),
            # a server gone without a word (host down, network cut) is noticed in ~25 s
            # instead of a writer blocking on a dead socket for the kernel's two hours
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        try:
            self._params.update(conninfo_to_dict(location))  # the URL's own settings win
        except psycopg.ProgrammingError as exc:
            raise AlertsUnavailable(f"alerts database {self._name}: invalid URL ({exc})") from None
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._closed = False
        self._create = create
        self._ready = False  # connected once and, if asked, the tables made sure of
        if not lazy:
            with self._lock, self._translate():
                self._prepare()

    @property
    def _name(self) -> str:
        return repr(redact_url(self.location))

    def _connect(self) -> psycopg.Connection:
        if self._closed:
            raise RuntimeError(f"alerts database {self._name} is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        self._conn = conn = psycopg.connect(autocommit=True, **self._params)
        timeout_ms = max(1, round(self.busy_timeout_s * 1000))
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{timeout_ms}ms",))
        return conn

    def _prepare(self) -> None:
        """On first use: connect; create the tables unless they exist, in a transaction
        holding the write lock (one creator at a time, the others then find them)."""
        conn = self._connect()
        if self._create and not self._tables_in(conn):
            conn.execute("BEGIN")
            try:
                conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
                for stmt in schema.POSTGRESQL:
                    conn.execute(stmt)
                conn.execute("COMMIT")
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
        self._ready = True

    @staticmethod
    def _tables_in(conn: psycopg.Connection) -> bool:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        return names >= schema.TABLES

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _begin(self, statement: str) -> psycopg.Connection:
        conn = self._connect()
        try:
            conn.execute(statement)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            conn = self._connect()  # it died while idle (a server restart): once more
            conn.execute(statement)
        return conn

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            if self._conn is not None and self._conn.broken:
                self._drop()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AlertsUnavailable(f"alerts database {self._name}: {reason}") from exc

    @contextlib.contextmanager
    def _transaction(self, begin: str, *first: str) -> Iterator[Connection]:
        with self._lock, self._translate():
            if not self._ready:
                self._prepare()
            conn = self._begin(begin)
            try:
                for stmt in first:
                    conn.execute(stmt)
                yield PgConnection(conn)
                conn.execute("COMMIT")
            except BaseException:
                if not conn.broken and conn.info.transaction_status != IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise

    def write(self) -> contextlib.AbstractContextManager[Connection]:
        """One write transaction; writers queue on the advisory lock (module docstring)."""
        return self._transaction(
            "BEGIN ISOLATION LEVEL READ COMMITTED", f"SELECT pg_advisory_xact_lock({LOCK_KEY})"
        )

    def read(self) -> contextlib.AbstractContextManager[Connection]:
        """A consistent read snapshot over several statements."""
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def has_tables(self) -> bool:
        with self._lock, self._translate():
            if not self._ready:
                self._prepare()
            return self._tables_in(self._connect())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
