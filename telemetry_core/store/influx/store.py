"""The Store protocol on InfluxDB: raw points, rollups, rolled-up records and late marks.

The data layout and its reasons are described in :mod:`telemetry_core.store.influx`.
Writes go through a *writer* (the v1 ``/write`` endpoint, or influxdb-client for
``influxdb2://``); every read goes through InfluxQL on ``/query``, so the rollup maths
is identical on InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from telemetry_core.identifiers import check_series_key
from telemetry_core.lineprotocol import check_finite, point_lines, series_prefixes
from telemetry_core.store.base import (
    Point,
    StoreUnavailable,
    WriteResult,
)
from telemetry_core.store.influx.frames import raw_frame
from telemetry_core.store.influx.guard import (
    Pending,
    Registry,
    Stats,
    Timing,
    Verifier,
    new_token,
)
from telemetry_core.store.influx.http import InfluxRequestError, V1Http, quote_ident
from telemetry_core.store.influx.late import LateMixin
from telemetry_core.store.influx.layout import (
    RAW,
    Writer,
    tag_filters,
)
from telemetry_core.store.influx.order import SEQ_LIMIT, PreWrite, clusters, pack, resolve
from telemetry_core.store.influx.rollups import RollupMixin

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

_MAX_REQUEST_POINTS = 50_000  # ~5 MB of line protocol


class InfluxStore(LateMixin, RollupMixin):
    def __init__(
        self, url: str, http: V1Http, writer: Writer, timing: Timing | None = None
    ) -> None:
        self.url = url
        self._http = http
        self._writer = writer
        self._prefixes: dict[tuple[str, str, str, str], str] = {}
        self._ready = False
        self.timing = timing or Timing()
        self._registry = Registry(self.timing)
        self._pre = PreWrite()
        # One write at a time per store object: the pre-write read and the knowledge it
        # updates assume it (the daemon has one writer thread anyway).
        self._write_lock = threading.RLock()
        self._verify_http = http.fork()
        self._verifier = Verifier(
            self.timing, self._verify_http.query, writer.write, self._repaired
        )

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
        # Refuse a bad name or NaN anywhere before anything is sent.
        series_prefixes(rows, measurement=RAW, cache=self._prefixes, check=check_series_key)
        check_finite(rows)
        self._ensure()
        with self._write_lock:
            written = self._write_ordered(rows, row_seqs, late_cutoff_ns)
            late = self._late(written, late_cutoff_ns)
        return WriteResult(len(points), late)

    def _write_ordered(
        self, rows: Sequence[Point], seqs: Sequence[int] | int, late_cutoff_ns: int | None
    ) -> Sequence[Point]:
        """Read, write, and queue the check; returns the points written."""
        registry, pre = self._registry, self._pre
        beat = registry.begin(self.query, self._writer.write)
        alone = registry.alone
        if pre.needs_refresh(rows, None if alone else self.timing.refresh_s):
            pre.refresh(self.query, rows)
        rows, seqs = pre.admit(self.query, rows, seqs)
        if not rows:
            return rows
        read_at = pre.known.at if pre.known is not None else time.monotonic()
        token, exact, stored_seqs = 0, False, seqs
        if not alone:
            token = new_token()
            top = seqs if isinstance(seqs, int) else max(seqs)
            if top >= SEQ_LIMIT:
                exact = True  # cannot carry a token: checked point by point
            elif isinstance(seqs, int):
                stored_seqs = pack(seqs, token)
            else:
                stored_seqs = [pack(q, token) for q in seqs]
        lines = point_lines(rows, self._prefixes, stored_seqs)
        beat_line = registry.line() if beat else ""
        step = _MAX_REQUEST_POINTS
        bodies = ["\n".join(lines[i : i + step]) + "\n" for i in range(0, len(lines), step)]
        for body in bodies:
            self._writer.write(body + beat_line)
            if beat_line:
                registry.beat_at, beat_line = time.monotonic(), ""
        acked = time.monotonic()
        pre.wrote(rows)
        if alone:
            return rows
        if acked - read_at > self.timing.window_s:
            self._verifier.stats.slow_writes += 1
            log.warning(
                "a write took %.1f s from its read to its acknowledgement (window %.1f s): a "
                "concurrent newer value of the same points may have been overwritten",
                acked - read_at,
                self.timing.window_s,
            )
        times = sorted(p[4] for p in rows)
        self._verifier.add(
            Pending(
                token,
                acked + self.timing.window_s,
                clusters(times),
                len({p[:5] for p in rows}),
                "".join(bodies),
                exact=exact,
                late_cutoff_ns=late_cutoff_ns,
            )
        )
        return rows

    def _repaired(self, sites_times: list[tuple[str, int]], late_cutoff_ns: int | None) -> None:
        """Points written again by the verifier mark their windows like any write."""
        with self._write_lock:
            self._late([("", s, "", "", t, 0.0) for s, t in sites_times], late_cutoff_ns)

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
    def order_stats(self) -> Stats:
        """Stream-order bookkeeping: batches verified, points repaired, slow writes."""
        return self._verifier.stats

    @property
    def superseded(self) -> int:
        """Points not written because a newer message's value was already stored."""
        return self._pre.superseded

    def close(self) -> None:
        """Verify what is still pending (waiting out its window), retire from the
        registry, close the connections."""
        self._verifier.close()
        if self._registry.beat_at is not None:
            with contextlib.suppress(StoreUnavailable, InfluxRequestError):
                self._writer.write(self._registry.line(retired=True))
        self._writer.close()
        self._verify_http.close()
        self._http.close()

    def __repr__(self) -> str:
        from telemetry_core.store import redact_url

        return f"InfluxStore({redact_url(self.url)!r})"

    # -- retention (telemetry_core.retention decides what goes; these count and delete) ---
    def retention_oldest(self, level: str | None, before_ns: int) -> int | None:
        from telemetry_core.store.influx import retention as influx_retention

        return influx_retention.oldest(self.query, level, before_ns)

    def retention_counts(self, level: str | None, start_ns: int, end_ns: int) -> dict[int, int]:
        from telemetry_core.store.influx import retention as influx_retention

        return influx_retention.counts(self.query, level, start_ns, end_ns)

    def retention_delete(self, level: str | None, expected: Mapping[int, int]) -> dict[int, int]:
        from telemetry_core.store.influx import retention as influx_retention

        self._ensure()
        return influx_retention.delete(self.query, self._writer, level, expected)


__all__ = ["InfluxRequestError", "InfluxStore"]
