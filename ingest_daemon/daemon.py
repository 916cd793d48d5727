"""The daemon: pull, decode, batch, commit off the event loop, then acknowledge.

Why acknowledge only after the commit: JetStream redelivers anything unacknowledged, and
the store's upsert by identity makes a redelivery harmless, so a crash at any instant
loses nothing and duplicates nothing (at-least-once delivery + idempotent writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import nats
from nats.aio.msg import Msg

from ingest_daemon.dlq import dead_letter_headers, dead_letter_subject
from ingest_daemon.jetstream import PullRequests, ensure_consumer, ensure_streams, parse_ack_reply
from ingest_daemon.metrics import Metrics
from ingest_daemon.settings import Settings
from telemetry_core.config import Config, load_config
from telemetry_core.decode import (
    MAX_DELIVERIES,
    STORE_REJECTED,
    Decoded,
    Limits,
    Rejection,
    decode_message,
)
from telemetry_core.store import Store, StoreUnavailable, open_store
from telemetry_core.subjects import STREAM
from telemetry_core.timeutil import NS

log = logging.getLogger("ingest_daemon")


@dataclass
class Batch:
    entries: list[tuple[Msg, Decoded, int]] = field(default_factory=list)  # msg, decoded, seq
    arrived_ns: list[int] = field(default_factory=list)  # stream timestamps, for latency
    points: list = field(default_factory=list)  # every entry's points, in order
    seqs: list[int] = field(default_factory=list)  # stream sequence of each point's message
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # entry, first, end point


class _Refused(Exception):
    """The store keeps refusing a write for a reason that is not an outage."""


REFUSE_AFTER = 3  # failed attempts that are not StoreUnavailable before giving up on a batch


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config: Config | None = None,
        store: Store | None = None,
        on_commit: Callable[[list[int], int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or load_config(settings.config_path)
        self.store = store or open_store(settings.store_url)
        self.metrics = Metrics()
        self.limits = Limits(
            max_bytes=settings.max_payload_bytes,
            max_age_ns=self.config.retention.raw_days * 86400 * NS,
        )
        self.grace_ns = self.config.rollups.grace_seconds * NS
        self.on_commit = on_commit
        self.pull_batch = max(64, min(1000, settings.batch_size))
        # Memory bound: messages and points received but not yet acknowledged.
        self.max_held = max(4 * settings.batch_size, 4 * self.pull_batch)
        self.max_held_points = 8 * settings.batch_size  # ~150 B a point: ~6 MB by default
        self._held_points = 0
        self._points_per_msg = 1.0  # running estimate, sizes pull requests
        self.http_port: int | None = None
        self._batch = Batch()
        self._batch_timer: asyncio.TimerHandle | None = None
        self._held = 0
        self._commits: set[asyncio.Task] = set()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._abandon = threading.Event()
        self._store_up = True
        self._store_error: str | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._started = time.monotonic()
        self._lag: int | None = None
        self.nc = None

    # -- lifecycle -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        http = None
        if s.http_port >= 0:
            from ingest_daemon.http import HealthServer

            http = HealthServer(s.http_host, s.http_port, self.health, self.metrics.registry)
            self.http_port = await http.start()
            log.info("health and metrics on http://%s:%d/health", s.http_host, self.http_port)
        self.nc = nc = await self._connect(stop)
        if nc is None:
            return
        self.metrics.nats_connected.set(1)
        js = nc.jetstream()
        if s.create_streams:
            await ensure_streams(js)
        await ensure_consumer(js, s.durable, max_ack_pending=max(20_000, 2 * self.max_held))
        self.js = js
        self.requests = PullRequests(STREAM, s.durable)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(
            inbox, cb=self._on_msg, pending_msgs_limit=4 * self.max_held, pending_bytes_limit=-1
        )
        self._inbox = inbox
        log.info("consuming %s with durable consumer %r", STREAM, s.durable)
        tasks = [asyncio.create_task(self._pull_loop()), asyncio.create_task(self._lag_loop())]
        try:
            await stop.wait()
        finally:
            log.info("stopping: finishing the batch in hand")
            await self._shutdown(tasks, sub)
            if http is not None:
                await http.stop()

    async def _connect(self, stop: asyncio.Event):
        """Connect, retrying forever: the daemon may start before NATS does."""
        delay = 0.5
        while not stop.is_set():
            try:
                return await nats.connect(**self._connect_options())
            except Exception as exc:
                log.warning(
                    "NATS not reachable (%s); retrying in %.1fs", exc or type(exc).__name__, delay
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
        return None

    def _connect_options(self) -> dict:
        s = self.settings
        opts: dict = {
            "servers": [u.strip() for u in s.nats_url.split(",")],
            "name": "telemetry-ingest",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": 5,
            "error_cb": self._on_error,
            "allow_reconnect": True,
            "disconnected_cb": self._on_disconnect,
            "reconnected_cb": self._on_reconnect,
            "pending_size": 64 * 1024 * 1024,
        }
        if s.nats_user:
            opts["user"], opts["password"] = s.nats_user, s.nats_password
        if s.nats_token:
            opts["token"] = s.nats_token
        if s.nats_creds:
            opts["user_credentials"] = s.nats_creds
        if s.tls_ca or s.tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=s.tls_ca)
            if s.tls_cert:
                ctx.load_cert_chain(s.tls_cert, s.tls_key)
            opts["tls"] = ctx
        return opts

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def _on_disconnect(self) -> None:
        self.metrics.nats_connected.set(0)
        if not self._stopping:
            log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnect(self) -> None:
        self.metrics.nats_connected.set(1)
        self.requests.reset()  # requests died with the old connection
        log.info("reconnected to NATS")
        self._wake.set()

    async def _shutdown(self, tasks: list[asyncio.Task], sub) -> None:
        self._stopping = True
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        for t in tasks:
            t.cancel()
        self._flush()
        if self._commits:
            remaining = max(0.1, deadline - time.monotonic())
            _done, pending = await asyncio.wait(self._commits, timeout=remaining)
            if pending:
                log.warning(
                    "shutdown timeout: %d batches left unacknowledged (will be redelivered)",
                    len(pending),
                )
                self._abandon.set()
                await asyncio.wait(pending, timeout=5)
        # Let outstanding pull requests run out; late arrivals are handed back (nak).
        while self.requests.count and time.monotonic() < deadline:
            self.requests.expire_stale()
            await asyncio.sleep(0.05)
        try:
            await sub.unsubscribe()
            await self.nc.drain()
        except Exception as exc:  # closing anyway
            log.debug("drain: %s", exc)
        self._executor.shutdown(wait=True)
        self.store.close()
        log.info("stopped")

    # -- receiving -------------------------------------------------------------------
    async def _pull_loop(self) -> None:
        # The flag, not only task cancellation, ends the loop: Python 3.11's wait_for can
        # swallow a cancellation that races its timeout, and a pull request sent while
        # stopping would feed messages nobody will commit.
        nc = self.nc
        while not self._stopping:
            self._wake.clear()
            self.requests.expire_stale()
            capacity = min(self.max_held, int(self.max_held_points / self._points_per_msg))
            room = (
                min(
                    self.max_held - self._held,
                    int((self.max_held_points - self._held_points) / self._points_per_msg),
                )
                - self.requests.outstanding
            )
            if (
                self._store_up
                and nc.is_connected
                and not self._stopping
                and self.requests.count < 2
                and room >= max(1, min(self.pull_batch, capacity) // 2)
            ):
                n = min(self.pull_batch, room)
                try:
                    await nc.publish(
                        self.requests.subject, self.requests.payload(n), reply=self._inbox
                    )
                except Exception as exc:
                    self.requests.reset()
                    log.debug("pull request failed: %s", exc)
                    await asyncio.sleep(0.2)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.25)

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and "Status" in headers and not msg.reply:
            status = headers.get("Status")
            if status in ("404", "408", "409"):
                self.requests.ended()
                self._wake.set()
            return
        if not msg.reply:
            return
        if self.requests.delivered():
            self._wake.set()  # room for the next pull request
        if self._stopping:
            await msg.nak()
            return
        self._held += 1
        ack = parse_ack_reply(msg.reply)
        now = time.time_ns()
        if ack.delivered > 1:
            self.metrics.redelivered.inc()
        if ack.delivered > self.settings.max_deliver:
            decoded = Decoded(
                rejections=[
                    Rejection(
                        None,
                        MAX_DELIVERIES,
                        f"delivered {ack.delivered} times without being stored",
                    )
                ]
            )
        else:
            decoded = decode_message(msg.subject, msg.data, headers, now, self.limits)
        n_points = len(decoded.points)
        self._held_points += n_points
        self._points_per_msg += (max(n_points, 1) - self._points_per_msg) * 0.01
        b = self._batch
        if n_points:
            b.spans.append((len(b.entries), len(b.points), len(b.points) + n_points))
            b.points.extend(decoded.points)
            b.seqs += [ack.stream_seq] * n_points
        b.entries.append((msg, decoded, ack.stream_seq))
        b.arrived_ns.append(ack.timestamp_ns)
        if len(b.points) >= self.settings.batch_size or len(b.entries) >= self.settings.batch_size:
            self._flush()
        elif len(b.entries) == 1:
            delay = self.settings.batch_max_delay_ms / 1000
            self._batch_timer = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        batch, self._batch = self._batch, Batch()
        if batch.entries:
            task = asyncio.create_task(self._commit(batch))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)

    # -- committing ------------------------------------------------------------------
    def _write_blocking(
        self, points: list, seqs: list[int], refuse_after: int = REFUSE_AFTER
    ) -> tuple[int, int, float]:
        """Runs on the writer thread. An outage (StoreUnavailable) is retried with backoff
        until the store is back or shutdown abandons the batch; any other error is retried
        ``refuse_after`` times, then raised as ``_Refused`` so one bad batch cannot wedge
        the consumer."""
        delay = 0.2
        refusals = 0
        while True:
            try:
                t0 = time.perf_counter()
                result = self.store.write_points(
                    points, seqs=seqs, late_cutoff_ns=time.time_ns() - self.grace_ns
                )
                elapsed = time.perf_counter() - t0
                if not self._store_up:
                    log.info("store is back: writing again")
                self._store_up, self._store_error = True, None
                self.metrics.store_up.set(1)
                return result.points, len(result.late_windows), elapsed
            except Exception as exc:
                self.metrics.store_errors.inc()
                if not isinstance(exc, StoreUnavailable):
                    refusals += 1
                    log.warning("store refused a write (%d/%d): %s", refusals, refuse_after, exc)
                    if refusals >= refuse_after:
                        raise _Refused(str(exc)[:500]) from exc
                else:
                    if self._store_up:
                        log.warning("store unavailable, holding %d messages: %s", self._held, exc)
                    self.metrics.store_up.set(0)
                    self._store_up, self._store_error = False, str(exc)[:300]
                if self._abandon.wait(delay):
                    raise
                delay = min(delay * 2, 5.0)

    async def _alive(self, awaitable, entries) -> object:
        """Await while telling JetStream every 10 s that these messages are in progress."""
        fut = asyncio.ensure_future(awaitable)
        while True:
            done, _ = await asyncio.wait({fut}, timeout=10)
            if done:
                return fut.result()
            with contextlib.suppress(Exception):  # disconnected: redelivery is harmless
                for msg, _, _ in entries:
                    await msg.in_progress()

    async def _write_isolated(self, batch: Batch) -> tuple[tuple[int, int, float], list]:
        """Write message by message; dead-letter the messages the store refuses."""
        loop = asyncio.get_running_loop()
        entries = list(batch.entries)
        points = late = 0
        elapsed = 0.0
        for idx, first, end in batch.spans:
            write = loop.run_in_executor(
                self._executor,
                self._write_blocking,
                batch.points[first:end],
                batch.seqs[first:end],
                1,
            )
            try:
                p, n_late, took = await self._alive(write, entries)
                points, late, elapsed = points + p, late + n_late, elapsed + took
            except _Refused as exc:
                msg, decoded, seq = entries[idx]
                refused = Rejection(
                    None, STORE_REJECTED, f"the store refused these readings: {exc}"
                )
                entries[idx] = (msg, Decoded([], 0, [refused, *decoded.rejections]), seq)
        return (points, late, elapsed), entries

    async def _commit(self, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        entries = batch.entries
        stored = (0, 0, 0.0)
        try:
            if batch.points:
                write = loop.run_in_executor(
                    self._executor, self._write_blocking, batch.points, batch.seqs
                )
                try:
                    stored = await self._alive(write, entries)
                except _Refused as exc:
                    log.error("store refused a batch (%s): writing message by message", exc)
                    stored, entries = await self._write_isolated(batch)
        except Exception:  # abandoned at shutdown: JetStream redelivers it later
            self._release(batch)
            return
        rejected = [e for e in entries if e[1].rejections]
        sent = await self._alive(
            asyncio.gather(*(self._dead_letter(*e) for e in rejected)), entries
        )
        unsent = {id(m) for (m, _, _), ok in zip(rejected, sent, strict=True) if not ok}
        commit_ns = time.time_ns()
        try:
            for msg, _, _ in entries:
                if id(msg) not in unsent:
                    await msg.ack()
        except Exception as exc:  # connection lost: JetStream redelivers, the upsert absorbs it
            log.warning("could not acknowledge a stored batch (%s); it will be redelivered", exc)
        self._release(batch)
        self._count(batch, entries, stored, commit_ns)

    def _release(self, batch: Batch) -> None:
        self._held -= len(batch.entries)
        self._held_points -= len(batch.points)
        self._wake.set()

    def _count(
        self, batch: Batch, entries: list, stored: tuple[int, int, float], commit_ns: int
    ) -> None:
        m = self.metrics
        points, late, elapsed = stored
        if points:
            m.batch_seconds.observe(elapsed)
            m.points_stored.inc(points)
            m.late_windows.inc(late)
        readings = 0
        outcomes: dict[str, int] = {}
        for _, decoded, _ in entries:
            readings += decoded.readings
            if decoded.rejections:
                for rej in decoded.rejections:
                    m.readings_rejected.labels(rej.reason).inc()
                outcome = decoded.outcome
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        outcomes["stored"] = len(entries) - sum(outcomes.values())
        for outcome, n in outcomes.items():
            m.messages.labels(outcome).inc(n)
        m.readings_stored.inc(readings)
        step = max(1, len(batch.arrived_ns) // 256)  # a sample per batch is plenty for a histogram
        for t in batch.arrived_ns[::step]:
            m.delay_seconds.observe(max(0, commit_ns - t) / NS)
        if self.on_commit is not None:
            self.on_commit(batch.arrived_ns, commit_ns)

    async def _dead_letter(self, msg: Msg, decoded: Decoded, seq: int) -> bool:
        headers = dead_letter_headers(msg.subject, msg.headers, decoded, seq, time.time_ns())
        for r in decoded.rejections[:3]:
            log.info("dead-letter %s #%s: %s (%s)", msg.subject, r.index, r.error, r.reason)
        delay = 0.2
        while not self._abandon.is_set():
            try:
                await self.js.publish(
                    dead_letter_subject(msg.subject), msg.data, headers=headers, timeout=5
                )
                return True
            except Exception as exc:
                log.warning("dead-letter publish failed, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return False

    # -- observability ---------------------------------------------------------------
    def _ping_store(self) -> None:
        """Runs on the writer thread, so it never races a write."""
        try:
            self.store.ping()
        except Exception as exc:
            self._store_up, self._store_error = False, str(exc)[:300]
            self.metrics.store_up.set(0)
        else:
            self._store_up, self._store_error = True, None
            self.metrics.store_up.set(1)

    async def _lag_loop(self) -> None:
        """Every 2 s: consumer lag; and, while no batch is in flight, the store's health."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if not self._commits:
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(self._executor, self._ping_store)
            try:
                info = await self.js.consumer_info(STREAM, self.settings.durable, timeout=2)
                self._lag = info.num_pending + info.num_ack_pending
                self.metrics.consumer_lag.set(self._lag)
            except Exception as exc:
                log.debug("consumer info: %s", exc)
            await asyncio.sleep(2)

    def health(self) -> dict:
        connected = bool(self.nc is not None and self.nc.is_connected)
        if connected and self._store_up:
            status = "ok"
        elif connected or self._store_up:
            status = "degraded"
        else:
            status = "error"
        return {
            "status": status,
            "nats": {"connected": connected},
            "store": {"up": self._store_up, "error": self._store_error},
            "consumer": {"durable": self.settings.durable, "lag": self._lag},
            "held_messages": self._held,
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
