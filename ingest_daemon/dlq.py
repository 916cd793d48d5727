"""Dead letters: the original bytes, subject and every reason, on stream ``IOT_DLQ``.

The body is always the original payload, untouched, so a replay after a fix is a plain
re-publish; reasons travel in headers. ``Nats-Msg-Id`` is derived from the original
stream sequence, so a redelivery after a crash does not dead-letter the message twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from telemetry_core.decode import Decoded
from telemetry_core.subjects import STREAM, dlq_subject

log = logging.getLogger(__name__)

MAX_REJECTED_IN_HEADER = 200
# Headers a replay needs to read the bytes as the device meant them (and the original id).
PASS_THROUGH = ("Content-Type", "Content-Encoding", "Telemetry-Dictionary", "Nats-Msg-Id")


def _clean(text: str, limit: int = 1000) -> str:
    """Header values must be one line of ASCII."""
    return json.dumps(text[:limit])[1:-1]


def dead_letter_headers(
    subject: str,
    headers: dict[str, str] | None,
    decoded: Decoded,
    stream_seq: int,
    received_ns: int,
) -> dict[str, str]:
    first = decoded.rejections[0]
    rejected = [r.as_dict() for r in decoded.rejections[:MAX_REJECTED_IN_HEADER]]
    out = {
        "Nats-Msg-Id": f"dlq-{STREAM}-{stream_seq}",
        "Telemetry-Reason": first.reason,
        "Telemetry-Error": _clean(first.error),
        "Telemetry-Outcome": decoded.outcome,
        "Telemetry-Rejected": json.dumps(rejected, ensure_ascii=True),
        "Telemetry-Rejected-Count": str(len(decoded.rejections)),
        "Telemetry-Stored-Readings": str(decoded.readings),
        "Telemetry-Original-Subject": _clean(subject, 512),
        "Telemetry-Original-Stream": STREAM,
        "Telemetry-Original-Sequence": str(stream_seq),
        "Telemetry-Received-At": str(received_ns),
    }
    lowered = {k.lower(): v for k, v in headers.items()} if headers else {}
    for name in PASS_THROUGH:
        value = lowered.get(name.lower())
        if value is not None:
            key = "Telemetry-Original-Msg-Id" if name == "Nats-Msg-Id" else name
            out[key] = _clean(value, 512)
    return out


def dead_letter_subject(subject: str) -> str:
    return dlq_subject(subject)


class DeadLetters:
    """Publishes dead letters to JetStream, retrying until stored or shutdown gives up.

    The original message is acknowledged only after its dead letter is stored, so a
    publish that keeps failing leaves the original to be redelivered, never lost."""

    def __init__(self, js: JetStreamContext, abandon: threading.Event) -> None:
        self.js = js
        self.abandon = abandon

    async def publish(self, msg: Msg, decoded: Decoded, seq: int) -> bool:
        """True once JetStream stored the letter; False if shutdown abandoned it."""
        headers = dead_letter_headers(msg.subject, msg.headers, decoded, seq, time.time_ns())
        for r in decoded.rejections[:3]:
            log.info("dead-letter %s #%s: %s (%s)", msg.subject, r.index, r.error, r.reason)
        delay = 0.2
        while not self.abandon.is_set():
            try:
                await self.js.publish(
                    dead_letter_subject(msg.subject), msg.data, headers=headers, timeout=5
                )
                return True
            except (nats.errors.Error, OSError) as exc:  # timeouts, no responders, closed
                log.warning("dead-letter publish failed, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return False
