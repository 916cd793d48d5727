"""What every part of the PostgreSQL store shares: one connection (opened on first use,
reopened after any failure), its lock, the write transaction, the translation of
PostgreSQL's errors into the store's, and the helpers that build frames and filters.

Why errors are sorted here, once:

* the server cannot be reached, went away (a restart, ``pg_terminate_backend``), a lock
  wait ran out (``lock_timeout``), a serialization failure or deadlock victim, a full
  disk: ``StoreUnavailable``. The daemon keeps the messages and retries; the next call
  opens a fresh connection when the old one broke.
* the server refuses the data itself (``DataError``: a number out of range):
  ``StoreRefused``, which the daemon dead-letters instead of retrying forever.
* anything else (a programming error, a missing privilege) propagates as it is.

Why the connection opens on first use and not in ``__init__``: a daemon that starts while
PostgreSQL is down must back off and retry, not crash (the contract's outage store is
opened on a closed port and must only fail when used).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from telemetry_core.store.base import StoreError, StoreRefused, StoreUnavailable
from telemetry_core.store.base import sql_filters as base_sql_filters
from telemetry_core.store.postgres.schema import Partitions, ensure_schema, prepare_session
from telemetry_core.store.urls import redact_url, scheme_of

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5  # an unreachable server answers StoreUnavailable after this long
APPLICATION_NAME = "telemetry-store"  # how an operator finds these sessions in pg_stat_activity
LOCK_TIMEOUT = "10s"  # a lock wait longer than this is an outage: the caller retries


def libpq_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` URLs as libpq takes them (``postgresql://``);
    host, port, user, password and database may be left out: libpq's environment
    variables (``PGHOST``, ``PGPASSWORD``, ...) and ``~/.pgpass`` fill them in."""
    scheme = scheme_of(url)
    if scheme not in ("postgres", "postgresql"):
        raise StoreError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    rest = url.split("://", 1)[1]
    conninfo = f"postgresql://{rest}"
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the part it could not read, which may be the password itself
        password = rest.split("@", 1)[0].partition(":")[2] if "@" in rest else ""
        reason = str(exc).strip().replace(conninfo, redact_url(conninfo))
        if password:
            reason = reason.replace(password, "***")
        raise StoreError(f"bad PostgreSQL URL {redact_url(url)!r}: {reason}") from None
    return conninfo


def copy_frame(
    conn: psycopg.Connection[Any],
    sql: str,
    params: Sequence[object] | Mapping[str, object],
    schema: dict[str, str],
    settings: Sequence[str] = (),
) -> pl.DataFrame:
    """The rows of ``sql`` as a frame of ``schema`` (polars type names, in column order),
    through ``COPY (sql) TO STDOUT`` in CSV parsed by polars: no Python object per value
    (a fetch of the reference week's 268,800 rollup rows cost 0.7-0.9 s of Python CPU as
    tuples, most of a read). Exact: ``extra_float_digits = 3`` makes the server print every
    float8 in its shortest form that reads back to the same bits (checked over 20,000 random
    bit patterns, -0, subnormals and infinities), whatever the server's setting; booleans
    come as ``t``/``f``. Runs in its own transaction (the ``SET LOCAL``s, ``settings`` too:
    statements run before the query); ``params`` are
    bound client-side (``COPY`` takes no server parameters), as literals psycopg quotes."""
    import polars as pl

    buf = bytearray()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL extra_float_digits = 3")
        for setting in settings:
            cur.execute(setting)
        with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV)", params) as copy:
            for chunk in copy:
                buf += chunk
    read = {name: (pl.String if t == "Boolean" else getattr(pl, t)) for name, t in schema.items()}
    frame = (
        pl.read_csv(bytes(buf), has_header=False, schema=read) if buf else pl.DataFrame(schema=read)
    )
    bools = [name for name, t in schema.items() if t == "Boolean"]
    if bools:
        frame = frame.with_columns(pl.col(c).replace_strict({"t": True, "f": False},
                                   return_dtype=pl.Boolean, default=None) for c in bools)  # fmt: skip
    return frame


def sql_filters(alias: str, *, allow_all: bool = False, **kw: str | None) -> tuple[str, list[str]]:
    """``base.sql_filters`` with this driver's placeholder (%s)."""
    return base_sql_filters(alias, mark="%s", allow_all=allow_all, **kw)


class PostgresBase:
    def __init__(self, url: str) -> None:
        self.url = url
        self._conninfo = libpq_url(url)
        self._secret = str(conninfo_to_dict(self._conninfo).get("password") or "")
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._schema_ready = False
        self._series: dict[tuple[str, str, str, str], int] = {}
        self.partitions = Partitions()

    # -- the connection ----------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one (schema checked on the first)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        self._conn = None
        given = conninfo_to_dict(self._conninfo)  # what the URL sets wins over our defaults
        defaults = {"application_name": APPLICATION_NAME, "connect_timeout": CONNECT_TIMEOUT_S}
        options: dict[str, Any] = {k: v for k, v in defaults.items() if k not in given}
        conn = psycopg.connect(self._conninfo, autocommit=True, **options)
        try:
            prepare_session(conn, LOCK_TIMEOUT)
            if not self._schema_ready:
                ensure_schema(conn)
                self._schema_ready = True
            self.partitions.forget()  # another process may have dropped some meanwhile
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _fail(self, exc: BaseException) -> BaseException | None:
        """The store's exception for ``exc`` (None: let it propagate). A connection that
        broke is dropped, so the next call reconnects."""
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            self._conn = None
            conn.close()
        self._series.clear()  # ids handed out in a rolled-back transaction are gone
        where = redact_url(self.url)
        reason = self._scrub(" ".join(str(exc).split()))  # one line: libpq adds hints on more
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):  # a standby, mid-failover
            return StoreUnavailable(f"{where}: {reason}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            if isinstance(exc, psycopg.InterfaceError) and self._conn is not None:
                return None  # misuse of a healthy connection: a bug
            return StoreUnavailable(f"{where}: {reason}")
        if isinstance(exc, psycopg.DataError | OverflowError):
            return StoreRefused(f"{where} refused the data: {reason}")
        return None

    class _Translate:
        def __init__(self, store: PostgresBase) -> None:
            self.store = store

        def __enter__(self) -> None:
            return None

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:  # never swallows: re-raises as the store's exception, or propagates
            if exc is not None and isinstance(exc, Exception):
                mapped = self.store._fail(exc)
                if mapped is not None:
                    raise mapped from None  # the cause may quote the connection string

    def _translate(self) -> PostgresBase._Translate:
        return PostgresBase._Translate(self)

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` in autocommit (reads: one statement each, no transaction left open)."""
        with self._lock, self._translate():
            return fn(self._connection())

    def _write_txn(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._lock, self._translate():
            conn = self._connection()
            with conn.transaction():
                return fn(conn)

    # -- small things ------------------------------------------------------------------
    def count_points(self) -> int:
        def count(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute("SELECT count(*) FROM raw").fetchone()
            return int(row[0]) if row else 0

        return self._run(count)

    def ping(self) -> None:
        """Fails (StoreUnavailable) when the store cannot take a write: unreachable, or a
        read-only server (a standby, ``default_transaction_read_only``)."""

        def check(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute("SELECT current_setting('transaction_read_only')").fetchone()
            if row is None or row[0] != "off":
                raise StoreUnavailable(f"{redact_url(self.url)}: the server is read-only")

        self._write_txn(check)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"

    __str__ = __repr__
