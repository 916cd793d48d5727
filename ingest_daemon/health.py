"""What ``/health`` answers, and the loop that keeps consumer lag and store health fresh.

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

from ingest_daemon.connection import Attempts
from ingest_daemon.metrics import Metrics
from ingest_daemon.writer import StoreWriter
from telemetry_core.subjects import STREAM

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
            "consumer": {"durable": self.durable, "lag": self.lag},
            "held_messages": self.held(),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
        if self.fault is not None:
            out["fault"] = self.fault
        return out

    async def refresh_loop(
        self, js: JetStreamContext, writing: Callable[[], bool], stopping: Callable[[], bool]
    ) -> None:
        """Every 2 s: the consumer lag; and, while no batch is being written, the store's
        health (a write in flight already tells whether the store is up)."""
        while not stopping():
            if not writing():
                await self.writer.ping()
            try:
                info = await js.consumer_info(STREAM, self.durable, timeout=2)
            except (nats.errors.Error, OSError) as exc:  # disconnected: lag unknown for now
                log.debug("consumer info: %s", exc)
            else:
                self.lag = info.num_pending + info.num_ack_pending
                self.metrics.consumer_lag.set(self.lag)
            await asyncio.sleep(LAG_INTERVAL_S)
