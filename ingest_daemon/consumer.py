"""Receiving: pull requests sent by hand, messages decoded in a callback, into the batcher.

Why pull requests by hand (see ``jetstream.py``): several daemons share one durable
consumer without overlap, and "stop pulling" is just "send no more requests", which is
how the daemon applies backpressure: while the store is down, or while its hands are full,
JetStream keeps the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ingest_daemon.batching import Batcher, InHand
from ingest_daemon.jetstream import PullRequests, delivery
from ingest_daemon.metrics import Metrics
from telemetry_core.decode import Decoded, Limits, Rejection, decode_message
from telemetry_core.dictionaries import Dictionary
from telemetry_core.reasons import MAX_DELIVERIES
from telemetry_core.subjects import STREAM

log = logging.getLogger(__name__)

TERMINAL_STATUS = ("404", "408", "409")  # no messages, request expired, request ended
# "No responders": the consumer has no leader (a cluster electing one after a server loss),
# the request is gone. Ask again after a pause: without it, every retry is answered at once
# (a hot loop); waiting out the request's expiry instead cost up to 4 s more of failover.
NO_LEADER_STATUS = "503"
NO_LEADER_RETRY_S = 0.25


class Consumer:
    def __init__(
        self,
        durable: str,
        *,
        pull_batch: int,
        max_deliver: int,
        limits: Limits,
        dictionaries: Mapping[str, Dictionary] | None = None,
        in_hand: InHand,
        batcher: Batcher,
        metrics: Metrics,
        store_up: Callable[[], bool],
        wake: asyncio.Event,
    ) -> None:
        self.requests = PullRequests(STREAM, durable)
        self.pull_batch = pull_batch
        self.max_deliver = max_deliver
        self.limits = limits
        self.dictionaries = dictionaries or {}
        self.in_hand = in_hand
        self.batcher = batcher
        self.metrics = metrics
        self.store_up = store_up
        self.wake = wake
        self.stopping = False
        self._nc: Client | None = None
        self._inbox = ""
        self._sub: Subscription | None = None
        self._pull_after = 0.0  # no pull request before this (monotonic), after a 503

    async def subscribe(self, nc: Client) -> None:
        self._nc = nc
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(
            self._inbox,
            cb=self.on_msg,
            pending_msgs_limit=4 * self.in_hand.max_msgs,
            pending_bytes_limit=-1,
        )

    def reconnected(self) -> None:
        self.requests.reset()  # requests died with the old connection
        self.wake.set()

    async def pull_loop(self) -> None:
        # The flag, not only task cancellation, ends the loop: Python 3.11's wait_for can
        # swallow a cancellation that races its timeout, and a pull request sent while
        # stopping would feed messages nobody will commit.
        nc = self._nc
        assert nc is not None, "subscribe() first"
        requests = self.requests
        while not self.stopping:
            self.wake.clear()
            requests.expire_stale()
            free, capacity = self.in_hand.room()
            room = free - requests.outstanding
            if (
                self.store_up()
                and nc.is_connected
                and requests.count < 2
                and room >= max(1, min(self.pull_batch, capacity) // 2)
                and time.monotonic() >= self._pull_after
            ):
                n = min(self.pull_batch, room)
                try:
                    await nc.publish(requests.subject, requests.payload(n), reply=self._inbox)
                except (nats.errors.Error, OSError) as exc:  # reconnecting: ask again later
                    requests.reset()
                    log.debug("pull request failed: %s", exc)
                    await asyncio.sleep(0.2)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.25)

    async def on_msg(self, msg: Msg) -> None:
        """The per-message hot path: status check, credit, decode, into the batch."""
        headers = msg.headers
        if not msg.reply:
            status = headers.get("Status") if headers else None
            if status in TERMINAL_STATUS:
                self.requests.ended()
                self.wake.set()
            elif status == NO_LEADER_STATUS:
                self.requests.ended()
                self._pull_after = time.monotonic() + NO_LEADER_RETRY_S
                self.wake.set()
            return
        if self.requests.delivered():
            self.wake.set()  # room for the next pull request
        if self.stopping:
            await msg.nak()
            return
        stream_seq, delivered = delivery(msg.reply)
        if delivered > 1:
            self.metrics.redelivered.inc()
            if delivered > self.max_deliver:
                error = f"delivered {delivered} times without being stored"
                decoded = Decoded(rejections=[Rejection(None, MAX_DELIVERIES, error)])
                self.batcher.add(msg, decoded, stream_seq)
                return
        decoded = decode_message(
            msg.subject, msg.data, headers, time.time_ns(), self.limits, self.dictionaries
        )
        self.batcher.add(msg, decoded, stream_seq)

    async def wind_down(self, deadline: float) -> None:
        """Stop pulling; let outstanding pull requests run out (late arrivals are nak'ed
        back to JetStream), then unsubscribe. Disconnected, there is nothing to wait for:
        the requests died with the connection."""
        self.stopping = True
        nc = self._nc
        while (
            self.requests.count
            and nc is not None
            and nc.is_connected
            and time.monotonic() < deadline
        ):
            self.requests.expire_stale()
            await asyncio.sleep(0.05)
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):  # closed already: nothing to undo
                await self._sub.unsubscribe()
