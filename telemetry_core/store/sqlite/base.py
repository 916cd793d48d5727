"""What every part of the SQLite store shares: the connection, its lock, the write
transaction, the translation of SQLite's errors (outage, refusal, or neither), and the
helpers that build frames and filters. The store itself (``sqlite.SqliteStore``) is composed of one part per role:
raw points (``raw.py``), rollups (``rollups.py``), retention
(``retention.py``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from telemetry_core.store.base import StoreRefused, StoreUnavailable
from telemetry_core.store.base import sql_filters as base_sql_filters
from telemetry_core.store.sqlite.schema import OPEN_TIMEOUT_S, open_connection

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")


def to_frame(rows: list[tuple], schema: dict[str, str]) -> pl.DataFrame:
    import polars as pl

    columns: list[Sequence[object]] = (
        list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    )
    dtypes = {name: getattr(pl, dtype) for name, dtype in schema.items()}
    return pl.DataFrame(
        {
            name: pl.Series(name, col, dtype=dtypes[name])
            for name, col in zip(schema, columns, strict=True)
        }
    )


def sql_filters(alias: str, *, allow_all: bool = False, **kw: str | None) -> tuple[str, list[str]]:
    """``base.sql_filters`` with this driver's placeholder (?)."""
    return base_sql_filters(alias, mark="?", allow_all=allow_all, **kw)


# Primary result codes (https://sqlite.org/rescode.html) that mean "cannot write now".
_OUTAGE_CODES = frozenset(
    getattr(sqlite3, name)
    for name in (
        "SQLITE_PERM", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_IOERR",
        "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_SCHEMA",
    )
)  # fmt: skip
# Extended codes of the constraint failures that the values cause (not our keys).
_REFUSED_CONSTRAINTS = frozenset(
    (
        sqlite3.SQLITE_CONSTRAINT_NOTNULL,
        sqlite3.SQLITE_CONSTRAINT_CHECK,
        sqlite3.SQLITE_CONSTRAINT_TRIGGER,
        getattr(sqlite3, "SQLITE_CONSTRAINT_DATATYPE", 3091),  # STRICT tables
    )
)


def _outage(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in _OUTAGE_CODES  # no code: as before, an outage


def _refusal(exc: sqlite3.IntegrityError | sqlite3.DataError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.DataError):  # SQLITE_TOOBIG
        return True
    return code in _REFUSED_CONSTRAINTS or code == sqlite3.SQLITE_MISMATCH


class SqliteBase:
    def __init__(
        self, path: str, *, busy_timeout_s: float = 5.0, open_timeout_s: float = OPEN_TIMEOUT_S
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._busy_timeout_s = busy_timeout_s
        self._open_timeout_s = open_timeout_s
        self._series: dict[tuple[str, str, str, str], int] = {}
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        with self._translate():
            return open_connection(
                self.path, busy_timeout_s=self._busy_timeout_s, open_timeout_s=self._open_timeout_s
            )

    class _translate:
        """Translate SQLite's errors into the store's two stated failures; the rest (a wrong
        column, a syntax error, a duplicate key our upserts cannot produce) is left as it
        is: a bug, which the daemon treats as a fault, never as bad data or an outage.

        * ``StoreUnavailable`` (callers back off and retry): the file is busy or locked by
          another connection, read-only, full, unreadable, cannot be opened.
        * ``StoreRefused`` (the daemon dead-letters the points): SQLite refuses the values
          themselves: a NOT NULL or CHECK constraint (a NaN is stored as NULL), a trigger
          that aborts (an operator's policy), a type a column does not take, a value too
          big."""

        def __enter__(self) -> None:
            return None

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:  # never swallows: re-raises as StoreUnavailable/StoreRefused, or lets it go
            if exc is None:
                return
            if isinstance(exc, sqlite3.OperationalError) and _outage(exc):
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError) and _refusal(exc):
                raise StoreRefused(f"sqlite refused the values: {exc}") from exc

    def _write_txn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock, self._translate():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._series.clear()  # ids created in the rolled-back txn are gone
                raise
            return result

    def count_points(self) -> int:
        with self._lock, self._translate():
            return self._conn.execute("SELECT count(*) FROM raw").fetchone()[0]

    def ping(self) -> None:
        """Fails when the store cannot take a write (locked, read-only, gone)."""
        with self._lock, self._translate():
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"
