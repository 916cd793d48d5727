"""Pull-request bookkeeping when the consumer has no leader (unit test of the consumer).

During a leader election every pull request is answered at once with status 503 (no
responders), as a 3-node cluster showed with its consumer leader SIGKILLed. Such a request
must end at once (not count as open until its expiry: that held ingest up to 4 s after the
new leader was elected), and the next request must wait a moment (not a hot loop).
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.msg import Msg

from ingest_daemon.batching import Batcher, InHand
from ingest_daemon.consumer import NO_LEADER_RETRY_S, Consumer
from ingest_daemon.metrics import Metrics
from telemetry_core.decode import Limits


def status(code: str) -> Msg:
    return Msg(None, subject="_INBOX.x", reply="", data=b"", headers={"Status": code})  # type: ignore[arg-type]


async def consumer_with_two_requests() -> Consumer:
    wake = asyncio.Event()
    hand = InHand(100, 100, wake)
    consumer = Consumer(
        "telemetry-ingest",
        pull_batch=100,
        max_deliver=5,
        limits=Limits(max_bytes=1 << 20, max_age_ns=1 << 62),
        in_hand=hand,
        batcher=Batcher(100, 0.1, hand, lambda batch: None),
        metrics=Metrics(),
        store_up=lambda: True,
        wake=wake,
    )
    consumer.requests.payload(100)
    consumer.requests.payload(100)
    return consumer


def test_no_leader_ends_the_request_and_pauses_the_next():
    async def run() -> None:
        c = await consumer_with_two_requests()
        before = time.monotonic()
        await c.on_msg(status("503"))
        assert c.requests.count == 1 and c.wake.is_set()
        assert c._pull_after >= before + NO_LEADER_RETRY_S

    asyncio.run(run())


def test_an_expired_request_ends_without_a_pause():
    async def run() -> None:
        c = await consumer_with_two_requests()
        await c.on_msg(status("408"))
        assert c.requests.count == 1 and c._pull_after == 0.0

    asyncio.run(run())
