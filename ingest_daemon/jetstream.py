"""JetStream plumbing: streams, the shared durable consumer, hand-made pull requests.

Why pull requests by hand: ``fetch()`` wraps every message in ``asyncio.wait_for`` and
tops out near 25k msg/s here; a callback subscription on an inbox fed by pull requests we
publish ourselves runs several times faster and keeps the pull model's two virtues: several
daemons share one durable consumer without overlap, and "stop pulling" is just "send no
more requests" (JetStream is the buffer while the store is down).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NamedTuple, TypeVar

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from ingest_daemon.settings import SettingsError, stream_replicas_from_env
from telemetry_core.subjects import DLQ_STREAM, DLQ_SUBJECTS, STREAM, STREAM_SUBJECTS

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM_MAX_AGE_S = 7 * 86400  # JetStream buffers up to a week of outage
DUPLICATE_WINDOW_S = 120


class StreamMismatch(SettingsError):
    """An existing stream cannot give what the settings ask for (fewer replicas)."""


# Answers that mean "JetStream is not ready yet": a cluster electing its meta leader or a
# stream leader answers nothing (timeout, no responders) or 503 for a few seconds.
NOT_READY = (ServiceUnavailableError, nats.errors.TimeoutError, nats.errors.NoRespondersError)
READY_WAIT_S = 60.0


async def retry_not_ready(
    call: Callable[[], Awaitable[T]], what: str, wait_s: float = READY_WAIT_S
) -> T:
    """``call()`` again while JetStream is not ready (a cluster starting or electing a
    leader), with backoff, for up to ``wait_s``; then the last error is raised."""
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            return await call()
        except NOT_READY as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: JetStream not ready (%s); retrying", what, type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create ``IOT`` and ``IOT_DLQ`` when missing, with ``replicas`` (default:
    ``TELEMETRY_STREAM_REPLICAS``, else 1); verify (never rewrite) existing ones.

    An existing stream with fewer replicas than asked is an error (``StreamMismatch``):
    whoever set 3 counts on surviving a server loss, and a log line nobody reads would
    hide that the data sits on one server. More replicas than asked is only noted: the
    stream is safer than asked for, and a daemon started without the variable must not
    stop a cluster's ingest."""
    if replicas is None:
        replicas = stream_replicas_from_env()
    for name, subjects, max_age in (
        (STREAM, list(STREAM_SUBJECTS), STREAM_MAX_AGE_S),
        (DLQ_STREAM, list(DLQ_SUBJECTS), None),
    ):
        try:
            info = await retry_not_ready(partial(js.stream_info, name), f"stream {name}")
        except NotFoundError:
            concurrent = await _create_stream(js, name, subjects, max_age, replicas)
            if concurrent is None:
                continue
            info = concurrent
        missing = set(subjects) - set(info.config.subjects or [])
        if missing:
            log.warning(
                "stream %s exists without subjects %s: readings may not reach it", name, missing
            )
        _check_replicas(name, info.config.num_replicas or 1, replicas)


def _check_replicas(name: str, actual: int, wanted: int) -> None:
    if actual < wanted:
        raise StreamMismatch(
            f"stream {name} has {actual} replica(s) but TELEMETRY_STREAM_REPLICAS={wanted}: "
            f"raise them (nats stream edit {name} --replicas {wanted}) or set "
            f"TELEMETRY_STREAM_REPLICAS={actual}"
        )
    if actual > wanted:
        log.info(
            "stream %s has %d replicas (TELEMETRY_STREAM_REPLICAS=%d): using it as it is",
            name,
            actual,
            wanted,
        )


async def _create_stream(
    js: JetStreamContext, name: str, subjects: list[str], max_age: int | None, replicas: int
) -> api.StreamInfo | None:
    """Create the stream; None when we created it, the stream's info when another process
    did at the same moment (to be verified like any existing stream)."""
    config = api.StreamConfig(
        name=name,
        subjects=subjects,
        storage=api.StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=max_age,
        num_replicas=replicas,
    )
    try:
        await retry_not_ready(lambda: js.add_stream(config), f"create stream {name}")
    except APIError as exc:  # another daemon created it at the same moment, or refused
        try:
            return await retry_not_ready(lambda: js.stream_info(name), f"stream {name}")
        except NotFoundError:
            raise StreamMismatch(
                f"NATS refused to create stream {name} with {replicas} replica(s) "
                f"(TELEMETRY_STREAM_REPLICAS): {exc.description}"
            ) from None
    log.info("created stream %s (%s), %d replica(s)", name, ", ".join(subjects), replicas)
    return None


async def ensure_consumer(
    js: JetStreamContext, durable: str, max_ack_pending: int, ack_wait_s: float = 30.0
) -> float:
    """Create the shared durable consumer when missing; return its ``ack_wait`` in seconds.

    An existing consumer is used as it is (other daemons share it): when its ``ack_wait``
    differs from ours, theirs is the one JetStream applies, so it is returned (the
    keep-alive interval follows it) and the difference is logged."""
    config = api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_ack_pending=max_ack_pending,
        filter_subject="iot.>",
        max_waiting=512,
    )
    what = f"durable consumer {durable}"
    try:
        info = await retry_not_ready(lambda: js.consumer_info(STREAM, durable), what)
    except NotFoundError:
        try:
            info = await retry_not_ready(lambda: js.add_consumer(STREAM, config), what)
            log.info("created durable consumer %s on %s", durable, STREAM)
        except BadRequestError:  # created concurrently
            info = await retry_not_ready(lambda: js.consumer_info(STREAM, durable), what)
    actual = float(info.config.ack_wait or ack_wait_s)
    if abs(actual - ack_wait_s) > 0.001:
        log.warning(
            "durable consumer %s has ack_wait %.1fs, not TELEMETRY_ACK_WAIT_S=%.1fs: using %.1fs"
            " (delete the consumer to change it)",
            durable,
            actual,
            ack_wait_s,
            actual,
        )
    return actual


class AckInfo(NamedTuple):
    delivered: int
    stream_seq: int
    timestamp_ns: int


def parse_ack_reply(reply: str) -> AckInfo:
    """Delivery count, stream sequence and stream timestamp from a JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (9 tokens) or
    the newer form with domain and account hash in front (11 or 12 tokens).
    """
    return AckInfo(*ack_fields(reply))


def ack_fields(reply: str) -> tuple[int, int, int]:
    """``parse_ack_reply`` as a plain tuple (delivered, stream sequence, timestamp)."""
    t = reply.split(".")
    if len(t) == 9:
        return int(t[4]), int(t[5]), int(t[7])
    if len(t) >= 11:
        return int(t[6]), int(t[7]), int(t[9])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


def delivery(reply: str) -> tuple[int, int]:
    """(stream sequence, delivery count): what every message needs, parsed at the least
    cost (it runs once a message; the timestamp is read later, for a sample only)."""
    t = reply.split(".")
    if len(t) == 9:
        delivered, seq = t[4], t[5]
    elif len(t) >= 11:
        delivered, seq = t[6], t[7]
    else:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return int(seq), 1 if delivered == "1" else int(delivered)


class PullRequests:
    """Credit accounting for outstanding pull requests on one inbox.

    The server fills waiting requests first-in first-out, and ours all share one expiry,
    so each delivered message counts against the oldest request, and each terminal status
    (404/408/409) ends the oldest one.
    """

    def __init__(self, stream: str, durable: str, expires_s: float = 2.0) -> None:
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.expires_s = expires_s
        self._open: deque[list[float]] = deque()  # [remaining, sent_at]

    @property
    def outstanding(self) -> int:
        return int(sum(r[0] for r in self._open))

    @property
    def count(self) -> int:
        return len(self._open)

    def payload(self, batch: int) -> bytes:
        self._open.append([batch, time.monotonic()])
        return json.dumps({"batch": batch, "expires": int(self.expires_s * 1e9)}).encode()

    def delivered(self) -> bool:
        """Count one message; True when that completed the oldest request."""
        if self._open:
            head = self._open[0]
            head[0] -= 1
            if head[0] <= 0:
                self._open.popleft()
                return True
        return False

    def ended(self) -> None:
        if self._open:
            self._open.popleft()

    def expire_stale(self) -> None:
        """Forget requests the server can no longer answer (lost in a reconnect)."""
        limit = time.monotonic() - self.expires_s - 2.0
        while self._open and self._open[0][1] < limit:
            self._open.popleft()

    def reset(self) -> None:
        self._open.clear()
