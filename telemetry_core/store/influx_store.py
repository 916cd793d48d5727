"""The Store protocol on InfluxDB: raw points, rollups, rolled-up records and late marks.

The data layout and its reasons are described in :mod:`telemetry_core.store.influx`.
Writes go through a *writer* (the v1 ``/write`` endpoint, or influxdb-client for
``influxdb2://``); every read goes through InfluxQL on ``/query``, so the rollup maths
is identical on InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telemetry_core.identifiers import check_name, check_series_key
from telemetry_core.lineprotocol import encode_points
from telemetry_core.store.base import (
    ALL,
    LateWindow,
    Point,
    WriteResult,
    check_level,
)
from telemetry_core.store.influx_frames import raw_frame
from telemetry_core.store.influx_http import InfluxRequestError, V1Http, quote_ident
from telemetry_core.store.influx_layout import (
    LATE,
    RAW,
    ROLLED_UP,
    Writer,
    tag_filters,
)
from telemetry_core.store.influx_rollups import RollupMixin
from telemetry_core.windows import WINDOW_15M_NS

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

_MAX_REQUEST_POINTS = 50_000  # ~5 MB of line protocol


class InfluxStore(RollupMixin):
    def __init__(self, url: str, http: V1Http, writer: Writer) -> None:
        self.url = url
        self._http = http
        self._writer = writer
        self._prefixes: dict[tuple[str, str, str, str], str] = {}
        self._ready = False

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
        self, points: Sequence[Point], *, late_cutoff_ns: int | None = None
    ) -> WriteResult:
        if not points:
            return WriteResult(0)
        # Encode everything first: a bad name or NaN anywhere refuses the batch before
        # anything is sent. Requests stay under servers' body limits (1.x: 25 MB).
        step, cache = _MAX_REQUEST_POINTS, self._prefixes
        bodies = [
            encode_points(
                points[i : i + step], measurement=RAW, cache=cache, check=check_series_key
            )
            for i in range(0, len(points), step)
        ]
        times = [p[4] for p in points]
        lo, hi = min(times), max(times)
        self._ensure()
        for body in bodies:
            self._writer.write(body)
        # Checked after the write: a rollup recorded before this check is seen here, one
        # that starts later reads these points; one running meanwhile is covered by
        # late_cutoff_ns (its window has ended), as with the SQLite store.
        done = self._rolled_up_15m(lo - lo % WINDOW_15M_NS, hi - hi % WINDOW_15M_NS)
        cut = (
            late_cutoff_ns is not None and lo - lo % WINDOW_15M_NS + WINDOW_15M_NS <= late_cutoff_ns
        )
        if not done and not cut:
            return WriteResult(len(points))  # the common case: no per-point bookkeeping
        counts: dict[tuple[int, str], int] = {}
        get = counts.get
        for _, s, _, _, t, _ in points:
            wk = (t - t % WINDOW_15M_NS, s)
            counts[wk] = get(wk, 0) + 1
        late = sorted(
            wk
            for wk in counts
            if (late_cutoff_ns is not None and wk[0] + WINDOW_15M_NS <= late_cutoff_ns)
            or (wk[0], ALL) in done
            or wk in done
        )
        if late:
            self._mark_late(late, counts)
        return WriteResult(len(points), tuple(late))

    def _rolled_up_15m(self, lo: int, hi: int) -> set[tuple[int, str]]:
        (series,) = self.query(
            f"SELECT {quote_ident('at')} FROM {quote_ident(ROLLED_UP)} "
            f"WHERE {quote_ident('level')} = '15m' AND time >= {lo} AND time <= {hi} "
            f"GROUP BY {quote_ident('site_id')}"
        )
        return {(row[0], s.tags["site_id"]) for s in series for row in s.values}

    def _marks(self, lo: int, hi: int) -> dict[tuple[int, str], dict]:
        cols = ("points", "first_marked_at", "last_marked_at", "cleared_up_to")
        (series,) = self.query(
            f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM {quote_ident(LATE)} "
            f"WHERE time >= {lo} AND time <= {hi} GROUP BY {quote_ident('site_id')}"
        )
        return {
            (row[0], s.tags["site_id"]): dict(zip(s.columns, row, strict=True))
            for s in series
            for row in s.values
        }

    @staticmethod
    def _live(mark: dict) -> bool:
        """A mark is live unless a clear covered its last touch (see clear_late_windows)."""
        cleared = mark.get("cleared_up_to")
        return mark.get("points") is not None and (
            cleared is None or mark["last_marked_at"] > cleared
        )

    def _mark_late(self, late: list[tuple[int, str]], counts: dict) -> None:
        existing = self._marks(late[0][0], late[-1][0])
        now = time.time_ns()
        lines = []
        for ws, site in late:
            old = existing.get((ws, site))
            live = old is not None and self._live(old)
            points = counts[(ws, site)] + (int(old["points"]) if live else 0)
            first = int(old["first_marked_at"]) if live else now
            # cleared_up_to is left out on purpose: InfluxDB keeps the field, and the
            # mark is live again because last_marked_at is now newer than it.
            lines.append(
                f"{LATE},site_id={site} points={points}i,first_marked_at={first}i,"
                f"last_marked_at={now}i {ws}"
            )
        self._writer.write("\n".join(lines) + "\n")

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

    # -- late windows ----------------------------------------------------------------
    def late_windows(self, limit: int = 100) -> list[LateWindow]:
        marks = self._marks(-(2**62), 2**62)
        live = sorted(
            ((ws, site, m) for (ws, site), m in marks.items() if self._live(m)),
            key=lambda item: (-item[0], item[1]),
        )
        return [
            LateWindow(ws, site, int(m["points"]), int(m["last_marked_at"]))
            for ws, site, m in live[:limit]
        ]

    def clear_late_windows(self, windows: Sequence[tuple[int, str]], marked_up_to_ns: int) -> int:
        """Clearing writes only ``cleared_up_to`` into the mark: InfluxDB merges it with
        the mark's other fields, so a mark touched concurrently (``last_marked_at`` newer
        than the clear) stays live without any read-modify-write race."""
        wanted = {(int(ws), check_name(site, "site_id")) for ws, site in windows}
        if not wanted:
            return 0
        marks = self._marks(min(w for w, _ in wanted), max(w for w, _ in wanted))
        lines = []
        for ws, site in sorted(wanted):
            mark = marks.get((ws, site))
            if mark is not None and self._live(mark) and mark["last_marked_at"] <= marked_up_to_ns:
                lines.append(f"{LATE},site_id={site} cleared_up_to={int(marked_up_to_ns)}i {ws}")
        if lines:
            self._writer.write("\n".join(lines) + "\n")
        return len(lines)

    # -- housekeeping ----------------------------------------------------------------
    def delete_before(self, level: str | None, before_ns: int) -> int:
        measurement = RAW if level is None else f"rollup_{check_level(level)}"
        counted = "value" if level is None else "count"
        live = "" if level is None else ' AND "count" > 0'
        (series,) = self.query(
            f"SELECT count({quote_ident(counted)}) FROM {quote_ident(measurement)} "
            f"WHERE time < {int(before_ns)}{live}"
        )
        n = int(series[0].values[0][1]) if series and series[0].values else 0
        if n and not self._writer.delete(measurement, -(2**62), int(before_ns), {}):
            log.warning(
                "this server does not delete through the v1 API: %s older than %s is kept; "
                "set a retention period on the database or bucket instead",
                measurement,
                before_ns,
            )
            return 0
        return n

    def ping(self) -> None:
        self._http.ping()
        self._ensure()

    def close(self) -> None:
        self._writer.close()
        self._http.close()

    def __repr__(self) -> str:
        from telemetry_core.store import redact_url

        return f"InfluxStore({redact_url(self.url)!r})"


__all__ = ["InfluxRequestError", "InfluxStore"]
