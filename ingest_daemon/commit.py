"""One batch from hand to acknowledged: write, dead-letter, acknowledge, count.

Why acknowledge only after the commit: JetStream redelivers anything unacknowledged, and
the store's upsert by identity (newest stream sequence wins) makes a redelivery harmless,
so a crash at any instant loses nothing and duplicates nothing (at-least-once delivery +
idempotent writes). Dead letters follow the same rule: the original is acknowledged only
after JetStream stored its letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from ingest_daemon.batching import Batch, InHand
from ingest_daemon.dlq import DeadLetters
from ingest_daemon.jetstream import ack_fields
from ingest_daemon.metrics import Metrics
from ingest_daemon.writer import Abandoned, Refused, StoreWriter, Written
from telemetry_core.decode import Decoded, Rejection
from telemetry_core.reasons import STORE_REJECTED
from telemetry_core.timeutil import NS

log = logging.getLogger(__name__)
T = TypeVar("T")
Entry = tuple[Msg, Decoded, int]
OnCommit = Callable[[list[int], int], None]  # (stream arrival times, commit time), for benchmarks


class Committer:
    def __init__(
        self,
        nc: Client,
        writer: StoreWriter,
        dead_letters: DeadLetters,
        metrics: Metrics,
        in_hand: InHand,
        *,
        keepalive_s: float,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.nc = nc
        self.writer = writer
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.in_hand = in_hand
        self.keepalive_s = keepalive_s
        self.on_commit = on_commit

    async def commit(self, batch: Batch) -> None:
        entries, rejected, readings = batch.entries, batch.rejected, batch.readings
        written = Written(0, 0, 0.0)
        try:
            if batch.points:
                try:
                    written = await self._alive(
                        self.writer.write(batch.points, batch.seqs), entries
                    )
                except Refused:
                    log.warning("store refused a batch: writing it message by message")
                    written, entries = await self._write_isolated(batch)
                    rejected = [e for e in entries if e[1].rejections]
                    readings = sum(e[1].readings for e in entries)
        except Abandoned:  # shutdown: nothing acknowledged, JetStream redelivers it later
            self.in_hand.release(batch)
            return
        unsent: set[int] = set()
        if rejected:
            sent = await self._alive(
                asyncio.gather(*(self.dead_letters.publish(*e) for e in rejected)), entries
            )
            unsent = {id(m) for (m, _, _), ok in zip(rejected, sent, strict=True) if not ok}
        commit_ns = time.time_ns()
        # An ack is an empty message to the reply subject (what ``Msg.ack`` sends), published
        # directly: it runs for every message, and the wrapper's checks cost ~10% of it.
        publish = self.nc.publish
        try:
            if unsent:
                for msg, _, _ in entries:
                    if id(msg) not in unsent:
                        await publish(msg.reply)
            else:
                for msg, _, _ in entries:
                    await publish(msg.reply)
        except nats.errors.Error as exc:  # connection lost: redelivered, the upsert absorbs it
            log.warning("could not acknowledge a stored batch (%s); it will be redelivered", exc)
        self.in_hand.release(batch)
        self._count(batch, len(entries), rejected, readings, written, commit_ns)
        log.debug(
            "batch: %d messages, %d points committed in %.1f ms, %d dead letters",
            len(entries),
            written.points,
            written.seconds * 1000,
            len(rejected),
        )

    async def _alive(self, awaitable: Awaitable[T], entries: list[Entry]) -> T:
        """Await while telling JetStream, every ``keepalive_s``, that these messages are
        in progress, so a long store outage does not make it hand them to another daemon."""
        fut = asyncio.ensure_future(awaitable)
        while True:
            done, _ = await asyncio.wait({fut}, timeout=self.keepalive_s)
            if done:
                return fut.result()
            try:
                for msg, _, _ in entries:
                    await msg.in_progress()
                self.metrics.keepalives.inc()
            except nats.errors.Error as exc:  # disconnected: a redelivery is harmless
                log.debug("in-progress keep-alive not sent: %s", exc)

    async def _write_isolated(self, batch: Batch) -> tuple[Written, list[Entry]]:
        """Write message by message; the messages the store refuses become dead letters."""
        entries = list(batch.entries)
        points = late = 0
        seconds = 0.0
        first = 0
        for idx, (msg, decoded, seq) in enumerate(batch.entries):
            end = first + len(decoded.points)
            if end == first:
                continue
            write = self.writer.write(batch.points[first:end], batch.seqs[first:end])
            first = end
            try:
                w = await self._alive(write, entries)
            except Refused as exc:
                refused = Rejection(
                    None, STORE_REJECTED, f"the store refused these readings: {exc}"
                )
                entries[idx] = (msg, Decoded([], 0, [refused, *decoded.rejections]), seq)
                continue
            points, late, seconds = points + w.points, late + w.late_windows, seconds + w.seconds
        return Written(points, late, seconds), entries

    def _count(
        self,
        batch: Batch,
        n_entries: int,
        rejected: list[Entry],
        readings: int,
        written: Written,
        commit_ns: int,
    ) -> None:
        m = self.metrics
        if written.points:
            m.batch_seconds.observe(written.seconds)
            m.points_stored.inc(written.points)
            m.late_windows.inc(written.late_windows)
        outcomes: dict[str, int] = {}
        for _, decoded, _ in rejected:
            for rej in decoded.rejections:
                m.readings_rejected.labels(rej.reason).inc()
            outcome = decoded.outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        outcomes["stored"] = n_entries - len(rejected)
        for outcome, n in outcomes.items():
            m.messages.labels(outcome).inc(n)
        m.readings_stored.inc(readings)
        # Stream arrival -> commit, from the timestamps in the ack subjects: a sample of the
        # batch is plenty for a histogram (all of it for a benchmark's on_commit).
        step = 1 if self.on_commit is not None else max(1, len(batch.entries) // 256)
        arrived = [ack_fields(msg.reply)[2] for msg, _, _ in batch.entries[::step]]
        for t in arrived:
            m.delay_seconds.observe(max(0, commit_ns - t) / NS)
        if self.on_commit is not None:
            self.on_commit(arrived, commit_ns)
