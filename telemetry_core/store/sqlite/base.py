"""What every part of the SQLite store shares: the connection, its lock, the write
transaction, the translation of lock/IO errors, and the helpers that build frames and
filters. The store itself (``sqlite.SqliteStore``) is composed of one part per role:
raw points (``raw.py``), rollups (``rollups.py``), retention
(``retention.py``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from telemetry_core.identifiers import check_field, check_name
from telemetry_core.store.base import ALL, StoreUnavailable
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
    """SQL filter clauses; every value is checked as an identifier first (``*`` names the
    site/portfolio rows of rollups, so rollup reads may ask for it)."""
    clauses, params = [], []
    for key, value in kw.items():
        if value is not None:
            if not (allow_all and value == ALL):
                (check_field if key == "field" else check_name)(value, key)
            clauses.append(f"{alias}.{key} = ?")  # key is a fixed column name, never user text
            params.append(value)
    return "".join(f" AND {c}" for c in clauses), params


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
        """Turn lock/IO errors into StoreUnavailable so callers back off instead of dying."""

        def __enter__(self) -> None:
            return None

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:  # never swallows: re-raises as StoreUnavailable, or lets it propagate
            if exc_type is not None and issubclass(exc_type, sqlite3.OperationalError):
                raise StoreUnavailable(f"sqlite: {exc}") from exc

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
