"""The Store protocol on InfluxDB: raw points, rollups, rolled-up records and late marks.

The data layout and its reasons are described in :mod:`telemetry_core.store.influx`.
Writes go through a *writer* (the v1 ``/write`` endpoint, or influxdb-client for
``influxdb2://``); every read goes through InfluxQL on ``/query``, so the rollup maths
is identical on InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from telemetry_core.identifiers import check_series_key
from telemetry_core.lineprotocol import check_finite, raw_lines, series_prefixes
from telemetry_core.store.base import Point, WriteResult
from telemetry_core.store.influx.frames import raw_frame
from telemetry_core.store.influx.http import InfluxRequestError, V1Http, quote_ident
from telemetry_core.store.influx.late import LateMixin
from telemetry_core.store.influx.layout import (
    RAW,
    Writer,
    tag_filters,
)
from telemetry_core.store.influx.order import KEY, Key, PreWrite, resolve
from telemetry_core.store.influx.rollups import RollupMixin

if TYPE_CHECKING:
    import polars as pl

_PART_POINTS = 2_500  # points per request: a 5,000-point batch goes in two (see _write_ordered)


class RawWriter:
    """The one raw writer of a database within this process: the lock that makes the
    read before a write and the write one step, and what that read learnt. Shared by
    every store object on the same database (two stores in one process are one writer,
    not two racing ones); other processes are kept out by the daemon's lease."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pre = PreWrite()
        self.sender = ThreadPoolExecutor(1, thread_name_prefix="influx-raw-send")


# (host, port, database, retention policy) -> its RawWriter, while a store uses it
_RAW_WRITERS: weakref.WeakValueDictionary[tuple, RawWriter] = weakref.WeakValueDictionary()
_RAW_WRITERS_LOCK = threading.Lock()


def raw_writer(http: V1Http) -> RawWriter:
    key = (http.host.lower(), http.port, http.database, http.retention_policy)
    with _RAW_WRITERS_LOCK:
        found = _RAW_WRITERS.get(key)
        if found is None:
            found = _RAW_WRITERS[key] = RawWriter()
        return found


class InfluxStore(LateMixin, RollupMixin):
    def __init__(self, url: str, http: V1Http, writer: Writer) -> None:
        self.url = url
        self._http = http
        self._writer = writer
        self._prefixes: dict[tuple[str, str, str, str], str] = {}
        self._ready = False
        self._raw = raw_writer(http)
        self._pre = self._raw.pre
        self._write_lock = self._raw.lock

    def _ensure(self) -> None:
        """Set-up on first use, not at open: a daemon starting while InfluxDB is down
        should back off and retry, not crash."""
        if not self._ready:
            self._writer.setup()
            self._ready = True

    def query(self, statements: str) -> list:
        self._ensure()
        return self._http.query(statements)

    # -- raw points ------------------------------------------------------------------
    def write_points(
        self,
        points: Sequence[Point],
        *,
        seqs: Sequence[int] | None = None,
        late_cutoff_ns: int | None = None,
    ) -> WriteResult:
        """Upsert in stream order (see :mod:`telemetry_core.store.influx.order`)."""
        if not points:
            return WriteResult(0)
        rows, row_seqs = resolve(points, seqs)
        keys: list[Key] = list(map(KEY, rows))
        # Refuse a bad name or NaN anywhere before anything is sent.
        if not all(map(self._prefixes.__contains__, keys)):
            series_prefixes(rows, measurement=RAW, cache=self._prefixes, check=check_series_key)
        check_finite(rows)
        self._ensure()
        with self._write_lock:
            written = self._write_ordered(rows, row_seqs, keys)
            late = self._late(written, late_cutoff_ns)
        return WriteResult(len(points), late)

    def _write_ordered(
        self, rows: Sequence[Point], seqs: Sequence[int] | int, keys: Sequence[Key]
    ) -> Sequence[Point]:
        """Read what may be stored, drop what a newer message already wrote, write the
        rest; returns the points written. No wait and no check afterwards: nobody else
        writes raw points to this database (see order.py).

        The batch goes in parts, each read, encoded and POSTed while the server writes the
        part before (on the database's sender thread): this store's own work then hides
        behind the server's instead of adding to it. Parts are written in order, so a
        later point of an identity still lands last; what a part's read relies on is not
        changed by the parts before it (a point of the same identity there has a sequence
        no higher, or ``resolve`` kept one point per identity). Every part is acknowledged,
        or the call raises, before it returns."""
        pre, step, prefix = self._pre, _PART_POINTS, self._prefixes.__getitem__
        if pre.needs_refresh(rows):
            pre.refresh(self.query, rows)
        written: list[Point] | None = None  # None while nothing was dropped
        pending: Future[None] | None = None
        try:
            for i in range(0, len(rows), step):
                part, part_keys = rows[i : i + step], keys[i : i + step]
                part_seqs = seqs if isinstance(seqs, int) else seqs[i : i + step]
                keep = pre.admit(self.query, part, part_seqs, part_keys)
                if keep is not None:
                    part, part_keys = [part[j] for j in keep], [part_keys[j] for j in keep]
                    if not isinstance(part_seqs, int):
                        part_seqs = [part_seqs[j] for j in keep]
                    if written is None:
                        written = list(rows[:i])
                if written is not None:
                    written.extend(part)
                if not part:
                    continue
                body = "\n".join(raw_lines(map(prefix, part_keys), part, part_seqs)) + "\n"
                if pending is not None:
                    pending.result()
                pending = self._raw.sender.submit(self._writer.write, body)
                pre.wrote(part_keys, part)  # early is safe: later points are read first
            if pending is not None:
                pending.result()
        finally:  # never return (or raise) with a part still in flight
            if pending is not None and not pending.done():
                wait([pending])
        return rows if written is None else written

    def read_points(
        self, start_ns, end_ns, *, measurement=None, field=None, site_id=None, device_id=None
    ) -> pl.DataFrame:
        where = tag_filters(
            measurement=measurement, site_id=site_id, device_id=device_id, field=field
        )
        (series,) = self.query(
            f"SELECT {quote_ident('value')} FROM {quote_ident(RAW)} "
            f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)}{where} GROUP BY *"
        )
        return raw_frame(series)

    def scan_points(self, start_ns: int, end_ns: int) -> pl.DataFrame:
        """InfluxDB returns series in tag order anyway: the plain read is the scan."""
        return self.read_points(start_ns, end_ns)

    def recount_raw(self, start_ns: int, end_ns: int, width_ns: int) -> pl.DataFrame:
        """The points read back and recomputed in polars, apart from the InfluxQL
        aggregation of ``aggregate_raw``."""
        from telemetry_core.rollup import recount_from_points

        return recount_from_points(self, start_ns, end_ns, width_ns)

    def ping(self) -> None:
        self._http.ping()
        self._ensure()

    @property
    def superseded(self) -> int:
        """Points not written because a newer message's value was already stored."""
        return self._pre.superseded

    def close(self) -> None:
        self._writer.close()
        self._http.close()

    def __repr__(self) -> str:
        from telemetry_core.store.urls import redact_url

        return f"InfluxStore({redact_url(self.url)!r})"

    # -- retention (telemetry_core.retention decides what goes; these count and delete) ---
    def retention_oldest(self, level: str | None, before_ns: int) -> int | None:
        from telemetry_core.store.influx import retention as influx_retention

        return influx_retention.oldest(self.query, level, before_ns)

    def retention_counts(self, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        from telemetry_core.store.influx import retention as influx_retention

        return influx_retention.counts(self.query, level, start_ns, end_ns)

    def check_retention(self) -> None:
        """A one-line ``StoreError`` when retention cannot delete on this server."""
        from telemetry_core.store.influx import retention as influx_retention

        influx_retention.check_retention(self._writer)

    def retention_delete(self, level: str | None, expected: Mapping[int, int]) -> dict[int, int]:
        from telemetry_core.store.influx import retention as influx_retention

        self._ensure()
        return influx_retention.delete(self.query, self._writer, level, expected)


__all__ = ["InfluxRequestError", "InfluxStore"]
