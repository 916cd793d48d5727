"""Late-window marks on InfluxDB: which 15-minute windows got points after their rollup.

``late_windows,site_id=S points=<n>i,first_marked_at=<ns>i,last_marked_at=<ns>i
[,cleared_up_to=<ns>i] <window start>``. Clearing writes only ``cleared_up_to``; InfluxDB
merges it into the mark, and a mark is live while ``last_marked_at > cleared_up_to``, so a
mark the daemon touches after the sensor's cut-off survives the clear without locking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from operator import itemgetter

from telemetry_core.identifiers import check_name
from telemetry_core.store.base import ALL, LateWindow, Point
from telemetry_core.store.influx.http import quote_ident
from telemetry_core.store.influx.layout import LATE, ROLLED_UP, Writer
from telemetry_core.windows import WINDOW_15M_NS


class LateMixin:
    _writer: Writer
    query: Callable[[str], list]  # provided by InfluxStore

    def _late(
        self, points: Sequence[Point], late_cutoff_ns: int | None
    ) -> tuple[tuple[int, str], ...]:
        """Mark the windows of written points that are late: ended at or before the
        cut-off, or already rolled up. Checked after the write: a rollup recorded before
        this check is seen here, one that starts later reads these points; one running
        meanwhile is covered by late_cutoff_ns (its window has ended), as with SQLite."""
        if not points:
            return ()
        times = list(map(itemgetter(4), points))
        lo, hi = min(times), max(times)
        done = self._rolled_up_15m(lo - lo % WINDOW_15M_NS, hi - hi % WINDOW_15M_NS)
        cut = (
            late_cutoff_ns is not None and lo - lo % WINDOW_15M_NS + WINDOW_15M_NS <= late_cutoff_ns
        )
        if not done and not cut:
            return ()  # the common case: no per-point bookkeeping
        counts: dict[tuple[int, str], int] = {}
        get = counts.get
        for p in points:
            t = p[4]
            wk = (t - t % WINDOW_15M_NS, p[1])
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
        return tuple(late)

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
            live = old if old is not None and self._live(old) else None
            points = counts[(ws, site)] + (int(live["points"]) if live else 0)
            first = int(live["first_marked_at"]) if live else now
            # cleared_up_to is left out on purpose: InfluxDB keeps the field, and the
            # mark is live again because last_marked_at is now newer than it.
            lines.append(
                f"{LATE},site_id={site} points={points}i,first_marked_at={first}i,"
                f"last_marked_at={now}i {ws}"
            )
        self._writer.write("\n".join(lines) + "\n")

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
