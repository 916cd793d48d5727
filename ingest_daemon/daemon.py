"""The daemon's lifecycle: assemble the parts, run until told to stop, stop cleanly.

The parts, one role each: ``connection`` (NATS), ``consumer`` (pull requests, decode),
``batching`` (batches, memory bound), ``commit`` (write, dead-letter, acknowledge, count),
``writer`` (the store thread: outages and refusals), ``dlq`` (dead letters), ``health``
(``/health``, lag), ``http`` (the endpoint), ``metrics``.

Stopping (SIGTERM or SIGINT, exit status 0): no new pull requests; the batch in hand is
committed and acknowledged within ``shutdown_timeout_s``; what is still waiting for the
store then is abandoned unacknowledged (JetStream redelivers it), never half-acknowledged.
A stop while NATS is still being reached at start (or JetStream set up) is immediate: there
is nothing in hand yet.

Faults: an exception nobody planned for (a bug in the store's write, the after-commit hook,
a store ping, a commit, the pull loop, the message callback or start-up) is never swallowed,
nor taken for the store refusing data (only ``StoreRefused`` makes dead letters). It is logged with its traceback, counted in
``telemetry_ingest_faults_total``, turns ``/health`` to ``error`` (HTTP 503), and stops the
daemon with exit status 1, so the supervisor sees it and restarts it; what was not
acknowledged is redelivered to the next daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client

from ingest_daemon.batching import Batch, Batcher, InHand
from ingest_daemon.commit import Committer, OnCommit
from ingest_daemon.connection import Attempts, close_quietly, connect_options, until_stopped
from ingest_daemon.consumer import Consumer
from ingest_daemon.dlq import DeadLetters
from ingest_daemon.health import Health
from ingest_daemon.jetstream import ensure_consumer, ensure_streams
from ingest_daemon.lease import LeaseHeld, WriterLease
from ingest_daemon.metrics import Metrics
from ingest_daemon.settings import Settings, SettingsError
from ingest_daemon.writer import AfterCommit, StoreWriter
from telemetry_core.config import Config, load_config
from telemetry_core.decode import Limits
from telemetry_core.store import Store, open_store, redact_url
from telemetry_core.subjects import STREAM
from telemetry_core.timeutil import NS

log = logging.getLogger("ingest_daemon")


def keepalive_interval(ack_wait_s: float) -> float:
    """How often a batch waiting for the store tells JetStream it is in progress: three
    times per ``ack_wait``, so one lost or late signal still leaves no gap."""
    return max(0.2, ack_wait_s / 3)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config: Config | None = None,
        store: Store | None = None,
        after_commit: AfterCommit | None = None,
        on_commit: OnCommit | None = None,
    ) -> None:
        """``after_commit(points, seqs)`` runs on the writer thread after each store commit,
        before the acknowledgements (see ``writer.AfterCommit``); ``on_commit`` runs on the
        event loop after them (benchmarks measure latency with it)."""
        self.settings = s = settings
        self.config = config or load_config(s.config_path)
        self.metrics = Metrics()
        self.http_port: int | None = None
        self.nc: Client | None = None
        self.attempts = Attempts()  # failed attempts to reach NATS: backoff, log, /health
        self._on_commit = on_commit
        self._wake = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._commits: set[asyncio.Task[None]] = set()
        self.exit_code = 0
        pull_batch = max(64, min(1000, s.batch_size))
        self.in_hand = InHand(s.batch_size, pull_batch, self._wake)
        store = store or open_store(s.store_url)
        # InfluxDB keeps stream order with one daemon per database (ingest_daemon/lease.py)
        self.lease = WriterLease.for_store(store, self.fault)
        self.writer = StoreWriter(
            self.lease.guard(store) if self.lease else store,
            self.metrics,
            grace_ns=self.config.rollups.grace_seconds * NS,
            after_commit=after_commit,
            held=lambda: self.in_hand.msgs,
        )
        self.batcher = Batcher(
            s.batch_size, s.batch_max_delay_ms / 1000, self.in_hand, self._commit
        )
        limits = Limits(
            max_bytes=s.max_payload_bytes, max_age_ns=self.config.retention.raw_days * 86400 * NS
        )
        self.consumer = Consumer(
            s.durable,
            pull_batch=pull_batch,
            max_deliver=s.max_deliver,
            limits=limits,
            dictionaries=self.config.dictionaries,
            in_hand=self.in_hand,
            batcher=self.batcher,
            metrics=self.metrics,
            store_up=lambda: self.writer.up,
            wake=self._wake,
        )
        self.health = Health(
            s.durable, self.writer, self.metrics, lambda: self.in_hand.msgs, self.attempts
        )
        self.committer: Committer | None = None

    @property
    def store(self) -> Store:
        return self.writer.store

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (or a fault sets it); the process exit status."""
        s = self.settings
        self._stop = stop
        http = None
        if s.http_port >= 0:
            from ingest_daemon.http import HealthServer

            http = HealthServer(s.http_host, s.http_port, self.health.status, self.metrics.registry)
            self.http_port = await http.start()
            log.info("health and metrics on http://%s:%d/health", s.http_host, self.http_port)
        try:
            options = connect_options(
                s,
                on_error=self._on_error,
                on_disconnect=self._on_disconnect,
                on_reconnect=self._on_reconnect,
            )
            self.nc = self.health.nc = Client()
            try:
                started, tasks = await until_stopped(self._start(self.nc, options, stop), stop)
            except (SettingsError, LeaseHeld):  # e.g. too few replicas, a live writer: exit 2
                await self._abort_start()
                raise
            except Exception as exc:  # unplanned, as anywhere else: a fault
                self.fault(exc, "start-up")
                started, tasks = False, None
            if not started or tasks is None:  # stopped (or failed) before consuming
                if not self.exit_code:
                    log.info("stopped before consuming (NATS not reached or not set up)")
                await self._abort_start()
                return self.exit_code
            try:
                await stop.wait()
            finally:
                log.info("stopping: finishing the batch in hand")
                await self._shutdown(tasks)
        finally:
            if http is not None:
                await http.stop()
        return self.exit_code

    async def _start(
        self, nc: Client, options: dict, stop: asyncio.Event
    ) -> list[asyncio.Task[None]]:
        """Connect (waiting for NATS as long as it takes), set up the streams and the
        durable consumer, subscribe, and start pulling: the tasks to stop at shutdown."""
        s = self.settings
        await nc.connect(**options)
        self.attempts.succeeded()
        self.metrics.nats_connected.set(1)
        log.info("connected to NATS at %s", self._server(nc))
        js = nc.jetstream()
        if self.lease is not None:
            await self.lease.take(js, stop)  # LeaseHeld: one line, exit status 2
        if s.create_streams:
            await ensure_streams(js, replicas=s.stream_replicas)
        max_ack_pending = max(20_000, 2 * self.in_hand.max_msgs)
        ack_wait = await ensure_consumer(
            js, s.durable, max_ack_pending=max_ack_pending, ack_wait_s=s.ack_wait_s
        )
        self.committer = Committer(
            nc,
            self.writer,
            DeadLetters(js, self.writer.abandon),
            self.metrics,
            self.in_hand,
            keepalive_s=keepalive_interval(ack_wait),
            on_commit=self._on_commit,
        )
        await self.consumer.subscribe(nc)
        log.info("consuming %s with durable consumer %r", STREAM, s.durable)
        tasks = [
            asyncio.create_task(self.consumer.pull_loop()),
            asyncio.create_task(
                self.health.refresh_loop(
                    js, lambda: bool(self._commits), lambda: self.consumer.stopping
                )
            ),
        ]
        for task in tasks:
            task.add_done_callback(self._task_done)
        return tasks

    async def _abort_start(self) -> None:
        """Nothing was pulled yet: close the client (stops its reconnecting) and the store."""
        assert self.nc is not None
        await close_quietly(self.nc)
        self.writer.close()

    def _commit(self, batch: Batch) -> None:
        """The batcher's hand-off: one task per batch (the writer thread serialises them)."""
        assert self.committer is not None
        task = asyncio.create_task(self.committer.commit(batch))
        self._commits.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._commits.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.fault(exc, task.get_coro().__qualname__)  # type: ignore[union-attr]

    def fault(self, exc: BaseException, where: str) -> None:
        """An unplanned exception: log it with its traceback, count it, report ``error``
        on ``/health`` and stop with exit status 1 (nothing unacknowledged is lost)."""
        log.error("fault in %s: stopping the daemon", where, exc_info=exc)
        self.metrics.faults.inc()
        if self.health.fault is None:
            self.health.fault = f"{where}: {type(exc).__name__}: {exc}"[:300]
        self.exit_code = 1
        if self._stop is not None:
            self._stop.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        self.consumer.stopping = True
        for t in tasks:
            t.cancel()
        self.batcher.flush()
        if self._commits:
            remaining = max(0.1, deadline - time.monotonic())
            _done, pending = await asyncio.wait(self._commits, timeout=remaining)
            if pending:
                log.warning(
                    "shutdown timeout: %d batches left unacknowledged (will be redelivered)",
                    len(pending),
                )
                self.writer.abandon.set()
                await asyncio.wait(pending, timeout=5)
        await self.consumer.wind_down(deadline)
        assert self.nc is not None
        if self.lease is not None:
            await self.lease.release()
        if self.nc.is_connected:
            try:
                await self.nc.drain()
            except (nats.errors.Error, OSError) as exc:  # closing anyway
                log.debug("drain: %s", exc)
        await close_quietly(self.nc)  # reconnecting: stop trying (nothing left to send)
        self.writer.close()
        log.info("stopped")

    # -- connection events -------------------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        """nats-py reports connection trouble here, and also any exception raised by the
        message callback (``Consumer.on_msg``): the latter is a bug, hence a fault.

        A failed attempt to connect or reconnect is counted, logged sparingly, and its
        backoff waited out here: nats-py awaits this callback before its next attempt."""
        if not isinstance(exc, nats.errors.Error | OSError):
            self.fault(exc, "the message callback")
        elif self._reaching():
            assert self.nc is not None
            delay = self.attempts.failed(exc, servers=len(self.nc.servers))
            if delay:
                await asyncio.sleep(delay)
        else:
            log.warning("nats: %s", exc)

    def _reaching(self) -> bool:
        """Trying to reach NATS: not connected yet, or reconnecting (not closing)."""
        nc = self.nc
        if nc is None or nc.is_closed or nc.is_draining:
            return False
        return not nc.is_connected

    async def _on_disconnect(self) -> None:
        self.metrics.nats_connected.set(0)
        stopping = self.consumer.stopping or (self._stop is not None and self._stop.is_set())
        if not stopping:
            log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnect(self) -> None:
        self.attempts.succeeded()
        self.metrics.nats_connected.set(1)
        self.consumer.reconnected()
        log.info("reconnected to NATS at %s", self._server(self.nc))

    @staticmethod
    def _server(nc: Client | None) -> str:
        """The connected server's URL for a log line (its credentials redacted)."""
        url = nc.connected_url if nc is not None else None
        return redact_url(url.geturl()) if url is not None else "?"
