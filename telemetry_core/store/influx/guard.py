"""Writers on one InfluxDB database, and the check that repairs a lost race between them.

InfluxDB has no lock and no conditional write, so concurrency is made visible instead:

* **Registry.** Each store object that writes raw points heartbeats into the ``writers``
  measurement (``id="<random>"``, every ``lease/6``; ``retired=true`` on close). A writer
  that sees no other live writer is *alone*: its read-then-write cannot race, and it
  writes plain sequences and skips verification (the cheap common case). A writer that
  finds others already live waits ``settle`` (refresh + window) before its first write,
  so that every alone writer has seen it and its in-flight writes have landed.
* **Verification** (not alone). Each batch's ``seq`` values carry a random 27-bit token
  (:func:`~telemetry_core.store.influx.order.pack`). ``window`` seconds after the write
  was acknowledged, a background thread counts the points still carrying the token in the
  batch's time span; a shortfall is examined point by point, and a point now holding a
  lower sequence is written again (and verified again).

The argument for why this closes the race, and what is left, is in docs/influxdb.md.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from telemetry_core.store.base import StoreUnavailable
from telemetry_core.store.influx.http import InfluxRequestError, quote_ident
from telemetry_core.store.influx.layout import RAW
from telemetry_core.store.influx.order import (
    NO_SEQ,
    STATEMENTS,
    TOKEN_BITS,
    Key,
    Query,
    pack,
    stored_seqs,
    token_bounds,
    unpack,
)

log = logging.getLogger(__name__)

WRITERS = "writers"
_SEQ = quote_ident("seq")


@dataclass(frozen=True)
class Timing:
    """``window``: the longest a write may take from its read to its acknowledgement,
    and the delay before a batch is verified (the two must be equal: see the docs)."""

    window_s: float = 2.0

    @property
    def refresh_s(self) -> float:
        """How old a read may be when a write relies on it."""
        return self.window_s / 4

    @property
    def settle_s(self) -> float:
        return self.refresh_s + self.window_s

    @property
    def lease_s(self) -> float:
        return max(30.0, 10 * self.window_s)

    @property
    def beat_s(self) -> float:
        return self.lease_s / 6


class Registry:
    def __init__(self, timing: Timing) -> None:
        self.id = secrets.token_hex(8)
        self.timing = timing
        self.beat_at: float | None = None  # monotonic time of our last stored heartbeat
        self.checked_at = 0.0
        self.alone = False

    def line(self, *, retired: bool = False) -> str:
        flag = ",retired=true" if retired else ""
        return f'{WRITERS} id="{self.id}"{flag} {time.time_ns()}\n'

    def others(self, query: Query) -> set[str]:
        """Ids of the other writers whose lease (by our clock) has not run out."""
        since = time.time_ns() - int(self.timing.lease_s * 1e9)
        (series,) = query(
            f'SELECT "id", "retired" FROM {quote_ident(WRITERS)} WHERE time > {since}'
        )
        live: set[str] = set()
        retired: set[str] = set()
        for s in series:
            i, r = s.columns.index("id"), s.columns.index("retired")
            for row in s.values:
                (retired if row[r] else live).add(row[i])
        return live - retired - {self.id}

    def begin(self, query: Query, write: Callable[[str], None]) -> bool:
        """Before a write: heartbeat when due and re-check who is live. Returns True when
        the caller should add a heartbeat line to its write."""
        now = time.monotonic()
        t = self.timing
        if self.beat_at is None or now - self.beat_at > t.lease_s - t.beat_s:
            # (re)joining: others may be writing alone; they must see us before we write
            write(self.line())
            self.beat_at = now
            others = self.others(query)
            self.checked_at = time.monotonic()
            if others:
                log.info("%d other writer(s) live on this database: verifying writes", len(others))
                time.sleep(t.settle_s)
            self.alone = not others
            return False
        if now - self.checked_at > t.refresh_s:
            self.alone = not self.others(query)
            self.checked_at = now
        return now - self.beat_at > t.beat_s


@dataclass
class Pending:
    """A written batch awaiting its check."""

    token: int
    due: float  # monotonic
    spans: list[tuple[int, int]]
    count: int  # distinct identities written
    body: str
    exact: bool = False  # sequences too large to pack: check point by point
    late_cutoff_ns: int | None = None


@dataclass
class Stats:
    verified: int = 0  # batches checked
    examined: int = 0  # batches whose count fell short (checked point by point)
    repaired: int = 0  # points written again after a lower sequence overwrote them
    slow_writes: int = 0  # writes acknowledged later than the window after their read
    unverified: list[int] = field(default_factory=list)  # tokens given up at close


def new_token() -> int:
    return random.getrandbits(TOKEN_BITS) or 1


def parse_line(line: str) -> tuple[Key, int, int, str]:
    """A raw line we wrote -> (series key, time, stream seq, line without its seq)."""
    head, _, t = line.rpartition(" ")
    series, _, _ = head.partition(" ")
    tags = dict(kv.split("=", 1) for kv in series.split(",")[1:])
    key = (tags["measurement"], tags["site_id"], tags["device_id"], tags["field"])
    rest, _, stored = head.rpartition(",seq=")
    return key, int(t), unpack(int(stored[:-1])), rest


class Verifier:
    """Counts each pending batch's surviving points once its window has passed, in a
    thread of its own (with its own connection), and writes lost points again."""

    def __init__(
        self,
        timing: Timing,
        query: Query,
        write: Callable[[str], None],
        on_repair: Callable[[list[tuple[str, int]], int | None], None],
    ) -> None:
        self.timing, self._query, self._write, self._on_repair = timing, query, write, on_repair
        self.stats = Stats()
        self._pending: list[Pending] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, batch: Pending) -> None:
        with self._cond:
            self._pending.append(batch)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="influx-stream-order", daemon=True
                )
                self._thread.start()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    due = min((b.due for b in self._pending), default=None)
                    wait = None if due is None else due - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
            try:
                self.verify_due()
            except (StoreUnavailable, InfluxRequestError) as exc:
                log.warning("stream-order check postponed: %s", exc)
                with self._cond:
                    self._cond.wait(self.timing.refresh_s)

    def verify_due(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        with self._cond:
            due = [b for b in self._pending if everything or b.due <= now]
        if not due:
            return
        statements: list[str] = []
        owners: list[Pending] = []
        for b in due:
            if b.exact:
                continue
            lo_seq, hi_seq = token_bounds(b.token)
            for lo, hi in b.spans:
                statements.append(
                    f"SELECT count({_SEQ}) FROM {quote_ident(RAW)} WHERE time >= {lo} AND "
                    f"time <= {hi} AND {_SEQ} >= {lo_seq} AND {_SEQ} <= {hi_seq}"
                )
                owners.append(b)
        counts: dict[int, int] = {}
        for i in range(0, len(statements), STATEMENTS):
            results = self._query("; ".join(statements[i : i + STATEMENTS]))
            for b, series in zip(owners[i : i + STATEMENTS], results, strict=True):
                n = sum(int(row[1]) for s in series for row in s.values)
                counts[id(b)] = counts.get(id(b), 0) + n
        for b in due:
            if b.exact or counts.get(id(b), 0) != b.count:
                self._examine(b)
            self.stats.verified += 1
            with self._cond:
                self._pending.remove(b)

    def _examine(self, batch: Pending) -> None:
        """Point by point: write again each point now holding a lower sequence."""
        self.stats.examined += 1
        parsed = [parse_line(line) for line in batch.body.splitlines()]
        wanted: dict[Key, list[int]] = {}
        for key, t, _, _ in parsed:
            wanted.setdefault(key, []).append(t)
        read_at = time.monotonic()
        stored = stored_seqs(self._query, wanted)
        mine: dict[tuple[Key, int], tuple[int, str]] = {}
        for key, t, seq, rest in parsed:  # the last line of an identity is what we stored
            mine[(key, t)] = (seq, rest)
        lost = [
            (k, seq, rest)
            for k, (seq, rest) in mine.items()
            if stored.get(k, NO_SEQ) != NO_SEQ and stored[k] < seq
        ]
        if not lost:
            return
        token = new_token()
        lines = [f"{rest},seq={pack(seq, token)}i {k[1]}" for k, seq, rest in lost]
        body = "\n".join(lines) + "\n"
        self._write(body)
        acked = time.monotonic()
        if acked - read_at > self.timing.window_s:
            self.stats.slow_writes += 1
        self.stats.repaired += len(lost)
        log.warning("%d point(s) overwritten by an older message were written again", len(lost))
        times = sorted(k[1] for k, _, _ in lost)
        self.add(
            Pending(
                token,
                acked + self.timing.window_s,
                [(times[0], times[-1])],
                len(lost),
                body,
                late_cutoff_ns=batch.late_cutoff_ns,
            )
        )
        self._on_repair([(k[0][1], k[1]) for k, _, _ in lost], batch.late_cutoff_ns)

    def close(self) -> None:
        """Check everything still pending (waiting out its window), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        for _ in range(3):  # repairs add batches of their own
            with self._cond:
                if not self._pending:
                    return
                wait = max(b.due for b in self._pending) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                self.verify_due(everything=True)
            except (StoreUnavailable, InfluxRequestError) as exc:
                log.error("stream-order check of %d batch(es) failed at close: %s",
                          self.pending(), exc)  # fmt: skip
                break
        with self._cond:
            self.stats.unverified = [b.token for b in self._pending]
