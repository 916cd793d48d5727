"""The store writer: one thread owns every store call; outages are waited out, refusals
dead-lettered, anything else stops the daemon.

Why a thread: store writes block (SQLite, HTTP) and must not stall the event loop that
receives and acknowledges messages. Why exactly one: the store's connection is not shared
between threads, a ping must never race a write, and one writer commits batches in the
order they were flushed.

Batches that queue behind a busy writer are committed together: when the thread takes the
next batch, every batch flushed since (up to ``max_points``) joins it in one store call,
in flush order, and each batch's caller is answered after that one commit. Nothing is
acknowledged before the commit that holds it, and a store keeps stream order by sequence,
so this changes the number of commits, not what is stored or when it is acknowledged.
Measured with the PostgreSQL store at 1 reading per message: the writer was busy 85-100%
of the time (a 5,000-point commit took 30-42 ms inside the daemon against 16 ms alone:
every round trip waits for the GIL the event loop holds), so batches queued one behind
the other, each paying its own round trips and commit. A refused group is split again
batch by batch, so each batch gets its own answer (see below).

Three kinds of failure, three answers:

* ``StoreUnavailable`` (locked, unreachable, 5xx): an outage. Retry with backoff until the
  store is back or shutdown abandons the batch; nothing is acknowledged meanwhile, so
  JetStream keeps the messages.
* ``StoreRefused``: the store states that it will not take these points (an InfluxDB
  field-type conflict, a SQLite constraint). Raised as ``Refused`` at once (the store said
  so; asking again changes nothing), so the caller can isolate the refused messages and
  dead-letter them instead of wedging the consumer.
* anything else (a ``TypeError``, a wrong column): a bug, never a verdict on the data. It
  propagates unchanged to the commit task, whose failure is the daemon's fault path
  (traceback logged, ``/health`` error, exit status 1, nothing of the batch acknowledged).
  Treating it as a refusal would quietly dead-letter all traffic.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from ingest_daemon.metrics import Metrics
from telemetry_core.store import Point, Store, StoreRefused, StoreUnavailable

log = logging.getLogger(__name__)

AfterCommit = Callable[[Sequence[Point], Sequence[int]], None]
"""Runs on the writer thread after each successful store commit and before any message of
it is acknowledged, with the committed points and their stream sequences (e.g. persisting
threshold alert events). ``StoreUnavailable`` from it is an outage: the write and the hook
are retried together, so the hook may see the same points more than once and must be
idempotent, as the store is. Anything else from it is a fault, ``StoreRefused`` included:
the points are stored, so they must never be dead-lettered as refused."""


class Refused(Exception):
    """The store refused a write (it raised ``StoreRefused``): dead-letter, do not retry."""


class Abandoned(Exception):
    """Shutdown gave up on a write that was waiting for the store to come back."""


@dataclass(frozen=True)
class Written:
    points: int
    late_windows: int
    seconds: float  # store commit time (without the after-commit hook)


def _answer(done: Future[Written], outcome: Written | BaseException) -> None:
    """Settle a batch's future, unless its caller is gone (cancelled at shutdown)."""
    if done.cancelled():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


class StoreWriter:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        grace_ns: int,
        after_commit: AfterCommit | None = None,
        held: Callable[[], int] = lambda: 0,
        max_points: int = 50_000,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.grace_ns = grace_ns
        self.after_commit = after_commit
        self.abandon = threading.Event()  # set by shutdown: stop waiting for the store
        self.up = True
        self.error: str | None = None
        self.held = held  # messages in hand, for the outage log line
        self.max_points = max_points  # most points committed together
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._queue: deque[tuple[list[Point], list[int], Future[Written]]] = deque()
        self._queue_lock = threading.Lock()

    async def write(self, points: list[Point], seqs: list[int]) -> Written:
        """Commit ``points`` (then run the after-commit hook) on the writer thread, with
        the batches queued behind it if the writer is busy (module docstring).

        Raises ``Refused`` when the store refuses the points, ``Abandoned`` when shutdown
        stops waiting out an outage, and any other exception as it came (a fault)."""
        done: Future[Written] = Future()
        with self._queue_lock:
            self._queue.append((points, seqs, done))
        self._executor.submit(self._drain)  # one drain per batch: a later one may find none
        return await asyncio.wrap_future(done)

    def _drain(self) -> None:
        """On the writer thread: the queued batches, oldest first, as few commits as fit."""
        with self._queue_lock:
            group: list[tuple[list[Point], list[int], Future[Written]]] = []
            total = 0
            while self._queue and (not group or total + len(self._queue[0][0]) <= self.max_points):
                item = self._queue.popleft()
                group.append(item)
                total += len(item[0])
        if not group:
            return
        if len(group) == 1:
            only, only_seqs, done = group[0]
            self._settle(done, partial(self._write_blocking, only, only_seqs))
            return
        points = [p for item in group for p in item[0]]
        seqs = [q for item in group for q in item[1]]
        try:
            written = self._write_blocking(points, seqs)
        except Refused:  # one of them is refused: each batch alone gets its own answer
            for batch, batch_seqs, done in group:
                self._settle(done, partial(self._write_blocking, batch, batch_seqs))
            return
        except BaseException as exc:  # Abandoned, or a fault: every batch of the group
            for _, _, done in group:
                _answer(done, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for i, (batch, _, done) in enumerate(group):
            # the late windows are counted once, with the first batch of the group
            _answer(done, Written(len(batch), written.late_windows if i == 0 else 0,
                                  written.seconds))  # fmt: skip

    @staticmethod
    def _settle(done: Future[Written], fn: Callable[[], Written]) -> None:
        try:
            result = fn()
        except BaseException as exc:
            _answer(done, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _answer(done, result)

    def _write_blocking(self, points: list[Point], seqs: list[int]) -> Written:
        delay = 0.2
        while True:
            try:
                t0 = time.perf_counter()
                try:
                    result = self.store.write_points(
                        points, seqs=seqs, late_cutoff_ns=time.time_ns() - self.grace_ns
                    )
                except StoreRefused as exc:  # stated by the store: these points, for good
                    self.metrics.store_errors.inc()
                    log.warning("store refused a write of %d points: %s", len(points), exc)
                    raise Refused(str(exc)[:500]) from exc
                elapsed = time.perf_counter() - t0
                if self.after_commit is not None:
                    self.after_commit(points, seqs)  # StoreRefused from it: a fault
                if not self.up:
                    log.info("store is back: writing again")
                self._mark(up=True)
                return Written(result.points, len(result.late_windows), elapsed)
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                if self.up:
                    log.warning("store unavailable, holding %d messages: %s", self.held(), exc)
                self._mark(up=False, error=str(exc))
            if self.abandon.wait(delay):
                raise Abandoned("shutdown: the write was abandoned")
            delay = min(delay * 2, 5.0)

    def _mark(self, *, up: bool, error: str | None = None) -> None:
        self.up, self.error = up, (None if up else (error or "")[:300])
        self.metrics.store_up.set(1 if up else 0)

    async def ping(self) -> None:
        """Check the store on the writer thread (so it never races a write); the result
        feeds ``/health`` and ``telemetry_ingest_store_up``. ``StoreUnavailable`` marks the
        store down; anything else is raised (a fault, as from a write)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._ping_blocking)

    def _ping_blocking(self) -> None:
        try:
            self.store.ping()
        except StoreUnavailable as exc:  # "cannot write now": reported, not raised
            log.debug("store ping failed: %s", exc)
            self._mark(up=False, error=str(exc))
        else:
            self._mark(up=True)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
