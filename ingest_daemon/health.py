"""What ``/health`` answers, and the loop that keeps consumer lag, the scaling signals and
store health fresh.

Status: ``ok`` when NATS and the store are both reachable, ``degraded`` when one of them
is (the daemon waits it out, holding what it has; that includes a daemon still trying to
reach NATS at start, whose failed attempts are shown), ``error`` when neither is, or when the
daemon hit a fault it cannot handle and is stopping (the HTTP answer is then 503, so a
supervisor or load balancer notices).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from ingest_daemon.connection import Attempts
from ingest_daemon.metrics import Metrics
from ingest_daemon.writer import StoreWriter
from telemetry_core.subjects import DLQ_STREAM, STREAM, STREAM_SUBJECTS

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 2.0


class Health:
    def __init__(
        self,
        durable: str,
        writer: StoreWriter,
        metrics: Metrics,
        held: Callable[[], int],
        attempts: Attempts | None = None,
    ) -> None:
        self.durable = durable
        self.attempts = attempts or Attempts()  # failed attempts to reach NATS
        self.writer = writer
        self.metrics = metrics
        self.held = held
        self.nc: Client | None = None
        self.lag: int | None = None
        self.lag_seconds: float | None = None
        self.dlq_messages: int | None = None
        self.fault: str | None = None  # an unexpected error: the daemon is stopping
        self._started = time.monotonic()

    def status(self) -> dict[str, Any]:
        connected = bool(self.nc is not None and self.nc.is_connected)
        store_up = self.writer.up
        if self.fault is not None or not (connected or store_up):
            status = "error"
        elif connected and store_up:
            status = "ok"
        else:
            status = "degraded"
        out: dict[str, Any] = {
            "status": status,
            "nats": {"connected": connected, **self.attempts.status()},
            "store": {"up": store_up, "error": self.writer.error},
            "consumer": {
                "durable": self.durable,
                "lag": self.lag,
                "lag_seconds": self.lag_seconds,
                "dlq_messages": self.dlq_messages,
            },
            "held_messages": self.held(),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
        if self.fault is not None:
            out["fault"] = self.fault
        return out

    async def refresh_loop(
        self, js: JetStreamContext, writing: Callable[[], bool], stopping: Callable[[], bool]
    ) -> None:
        """Every 2 s: the consumer lag, its age and the dead letters' count; and, while no
        batch is being written, the store's health (a write in flight already tells
        whether the store is up)."""
        while not stopping():
            if not writing():
                await self.writer.ping()
            try:
                info = await js.consumer_info(STREAM, self.durable, timeout=2)
                self.lag = info.num_pending + info.num_ack_pending
                self.metrics.consumer_lag.set(self.lag)
                self.lag_seconds = await oldest_unacked_age(js, info)
                self.metrics.lag_seconds.set(self.lag_seconds)
                self.dlq_messages = await dlq_depth(js)
                self.metrics.dlq_messages.set(self.dlq_messages)
            except (nats.errors.Error, OSError) as exc:  # disconnected: unknown for now
                log.debug("consumer info: %s", exc)
            await asyncio.sleep(LAG_INTERVAL_S)


async def oldest_unacked_age(js: JetStreamContext, info: ConsumerInfo) -> float:
    """Seconds since the oldest message the durable consumer has not acknowledged reached
    the stream; 0 when nothing is pending.

    Why an age and not only a count: 50 messages behind means nothing by itself, 50 messages
    of which the oldest waits for 10 minutes is what an autoscaler or an on-call person acts
    on. Everything up to ``ack_floor`` is acknowledged, so the oldest unacknowledged message
    is the first one after it in the consumer's subjects (a deleted or purged sequence is
    skipped by asking for the next one): one consumer info and one message get."""
    if not (info.num_pending or info.num_ack_pending):
        return 0.0
    floor = (info.ack_floor.stream_seq if info.ack_floor is not None else None) or 0
    subject = info.config.filter_subject or STREAM_SUBJECTS[0]
    try:
        msg = await js.get_msg(STREAM, floor + 1, subject=subject, next=True)
    except NotFoundError:  # acknowledged or removed since the consumer info
        return 0.0
    if msg.time is None:
        return 0.0
    return max(0.0, time.time() - msg.time.timestamp())


async def dlq_depth(js: JetStreamContext) -> int:
    """Messages in ``IOT_DLQ`` (0 while the stream does not exist yet)."""
    try:
        info = await js.stream_info(DLQ_STREAM)
    except NotFoundError:
        return 0
    return info.state.messages
