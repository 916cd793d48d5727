"""Last write wins in *stream order* on InfluxDB, a database with no conditional write.

Every raw point carries the JetStream stream sequence of its message in an integer field
``seq``. A write first learns which of its identities may already be stored and drops the
points whose stored ``seq`` is higher (a message redelivered after a crash, whose identity
a later message rewrote); the rest are written with whole field sets (``value`` and
``seq``). That read-then-write is not atomic in InfluxDB, so it is exact only while
nobody else writes raw points between the read and the write: there is one raw writer
per database. Within a process the store serialises its raw writes per database
(``store.py``); across processes the ingest daemon holds a lease for the database
(``ingest_daemon/lease.py``). Why, and what that leaves, is in docs/influxdb.md ("Stream
order").

This module: the in-call resolution and the pre-write read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter, le

from telemetry_core.store.base import Point
from telemetry_core.store.influx.http import Series, quote_ident
from telemetry_core.store.influx.layout import RAW, tag_filters

Key = tuple[str, str, str, str]
Query = Callable[[str], list[list[Series]]]

NO_SEQ = -1  # a stored point written before sequences were stored loses to any write
GAP_NS = 5 * 60 * 10**9  # a batch's times split into clusters at gaps wider than this
AHEAD_NS = 15 * 60 * 10**9  # what the server holds is learnt up to this far past a batch
STATEMENTS = 200  # InfluxQL statements per request
_SEQ = quote_ident("seq")
KEY = itemgetter(0, 1, 2, 3)
_TIME = itemgetter(4)


def stream_seq(stored: int) -> int:
    """The stream sequence of a stored ``seq``. Releases before the one-writer lease packed
    a batch token into negative values (``-1 - (token << 36 | seq)``) while several
    writers were live; points written then may still be stored, and are read so."""
    return stored if stored >= 0 else (-1 - stored) & ((1 << 36) - 1)


def resolve(
    points: Sequence[Point], seqs: Sequence[int] | None
) -> tuple[Sequence[Point], Sequence[int] | int]:
    """One call's points with their sequences, so that within the call the highest
    sequence wins and equal sequences go to the later point. Non-decreasing sequences (the
    daemon's usual case) need nothing: InfluxDB keeps the last line written for a point.
    Otherwise (a redelivered older message later in the batch) one point per identity."""
    if seqs is None:
        return points, 0
    if len(seqs) != len(points):
        raise ValueError(f"{len(seqs)} seqs for {len(points)} points")
    if all(map(le, seqs, islice(seqs, 1, None))):
        return points, seqs
    best: dict[tuple, int] = {}
    for i, (p, q) in enumerate(zip(points, seqs, strict=True)):
        j = best.get(p[:5])
        if j is None or q >= seqs[j]:
            best[p[:5]] = i
    keep = sorted(best.values())
    return [points[i] for i in keep], [seqs[i] for i in keep]


def clusters(times: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted times -> ``[(lo, hi)]`` split at gaps wider than GAP_NS: a query over a
    batch holding live and day-old points scans two short ranges, not the day between."""
    out = []
    lo = prev = times[0]
    for t in times[1:]:
        if t - prev > GAP_NS:
            out.append((lo, prev))
            lo = t
        prev = t
    out.append((lo, prev))
    return out


def series_key(s: Series) -> Key:
    return (s.tags["measurement"], s.tags["site_id"], s.tags["device_id"], s.tags["field"])


def stored_seqs(query: Query, wanted: dict[Key, list[int]]) -> dict[tuple[Key, int], int]:
    """``(key, time) -> stream seq`` of the stored points among ``wanted`` (series ->
    times). One statement per series and cluster, all tags equal: the server walks only
    that series' index entry and range, ~0.1 ms a statement."""
    statements: list[str] = []
    keys: list[Key] = []
    for key, times in wanted.items():
        m, s, d, f = key
        where = tag_filters(measurement=m, site_id=s, device_id=d, field=f)
        for lo, hi in clusters(sorted(times)):
            statements.append(
                f"SELECT {_SEQ} FROM {quote_ident(RAW)} WHERE time >= {lo} AND time <= {hi}{where}"
            )
            keys.append(key)
    out: dict[tuple[Key, int], int] = {}
    for i in range(0, len(statements), STATEMENTS):
        results = query("; ".join(statements[i : i + STATEMENTS]))
        for key, found in zip(keys[i : i + STATEMENTS], results, strict=True):
            for one in found:
                for t, stored in one.values:
                    out[(key, t)] = NO_SEQ if stored is None else stream_seq(stored)
    return out


@dataclass
class Knowledge:
    """What the server held when asked: per series, the newest stored time within
    ``[lo, hi]``, plus what was written since (by the one writer of the database, so
    nothing else can have been). A point in ``[lo, hi]`` newer than that cannot be stored
    yet, so it needs no read of its own."""

    lo: int
    hi: int
    last: dict[Key, int]


class PreWrite:
    """The read before a write: which points would replace a stored higher sequence."""

    def __init__(self) -> None:
        self.known: Knowledge | None = None
        self.superseded = 0  # points dropped because a newer message's value is stored

    def refresh(self, query: Query, rows: Sequence[Point]) -> None:
        """Learn the newest stored time of every series in the newest cluster of the
        batch and AHEAD_NS beyond it, in one ``last()`` per series (a small answer)."""
        times = sorted(map(itemgetter(4), rows))
        lo, hi = clusters(times)[-1][0], times[-1] + AHEAD_NS
        (series,) = query(
            f"SELECT last({_SEQ}) FROM {quote_ident(RAW)} WHERE time >= {lo} "
            f"AND time <= {hi} GROUP BY *"
        )
        self.known = Knowledge(lo, hi, {series_key(s): s.values[-1][0] for s in series})

    def needs_refresh(self, rows: Sequence[Point]) -> bool:
        """Only when the batch reaches past what was learnt: the knowledge never goes
        stale, because nobody else writes raw points to this database."""
        known = self.known
        return known is None or max(map(itemgetter(4), rows)) > known.hi

    def admit(
        self, query: Query, rows: Sequence[Point], seqs: Sequence[int] | int, keys: Sequence[Key]
    ) -> list[int] | None:
        """The indices of the points to write: those whose identity is not stored with a
        higher sequence (None: all of them). ``keys`` are the points' series keys."""
        known = self.known
        assert known is not None, "refresh() first"
        lo, hi, get = known.lo, known.hi, known.last.get
        floor = lo - 1
        maybe = [
            i
            for i, (k, t) in enumerate(zip(keys, map(_TIME, rows), strict=True))
            if not lo <= t <= hi or t <= get(k, floor)
        ]
        if not maybe:
            return None  # the streaming case: nothing to read
        wanted: dict[Key, list[int]] = {}
        for i in maybe:
            wanted.setdefault(keys[i], []).append(rows[i][4])
        stored = stored_seqs(query, wanted)
        drop = set()
        for i in maybe:
            have = stored.get((keys[i], rows[i][4]))
            if have is not None and have > (seqs if isinstance(seqs, int) else seqs[i]):
                drop.add(i)
        if not drop:
            return None
        self.superseded += len(drop)
        return [i for i in range(len(rows)) if i not in drop]

    def wrote(self, keys: Sequence[Key], rows: Sequence[Point]) -> None:
        """Our own points are stored now: a later point at or before them needs a read."""
        if self.known is None:
            return
        last = self.known.last
        get = last.get
        for key, t in zip(keys, map(_TIME, rows), strict=True):
            if t > get(key, -(2**63)):
                last[key] = t
