"""Messages in hand: grouped into batches for one store commit each, and bounded in memory.

Why batches: a store commit costs about the same for 1 or 5,000 points, so points are
committed together, at the latest ``batch_max_delay_ms`` after the first one arrived
(latency stays bounded when traffic is light).

Why a bound: everything received but not yet acknowledged sits in memory. ``InHand``
counts it, and the consumer asks JetStream for more only while there is room, so a slow
or absent store makes the daemon stop pulling instead of growing (JetStream is the buffer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from telemetry_core.decode import Decoded
from telemetry_core.store import Point


@dataclass
class Batch:
    entries: list[tuple[Msg, Decoded, int]] = field(default_factory=list)  # msg, decoded, seq
    points: list[Point] = field(default_factory=list)  # every entry's points, in order
    seqs: list[int] = field(default_factory=list)  # stream sequence of each point's message
    # Kept as messages arrive, so committing needs no second pass over every entry:
    readings: int = 0  # readings accepted by the decoder
    rejected: list[tuple[Msg, Decoded, int]] = field(default_factory=list)  # dead letters due


class InHand:
    """Messages and points received and not yet acknowledged (the daemon's memory bound)."""

    def __init__(self, batch_size: int, pull_batch: int, wake: asyncio.Event) -> None:
        self.max_msgs = max(4 * batch_size, 4 * pull_batch)
        self.max_points = 8 * batch_size  # ~150 B a point: ~6 MB by default
        self.msgs = 0
        self.points = 0
        self.points_per_msg = 1.0  # running estimate (per batch), sizes pull requests
        self._wake = wake  # the puller waits on it for room

    def room(self) -> tuple[int, int]:
        """(messages that fit now, messages that fit when empty), by the point estimate."""
        per = self.points_per_msg
        capacity = min(self.max_msgs, int(self.max_points / per))
        free = min(self.max_msgs - self.msgs, int((self.max_points - self.points) / per))
        return free, capacity

    def release(self, batch: Batch) -> None:
        self.msgs -= len(batch.entries)
        self.points -= len(batch.points)
        self._wake.set()


class Batcher:
    """Collects decoded messages; hands a batch to ``on_batch`` when it is full or due."""

    def __init__(
        self,
        batch_size: int,
        max_delay_s: float,
        in_hand: InHand,
        on_batch: Callable[[Batch], None],
    ) -> None:
        self.batch_size = batch_size
        self.max_delay_s = max_delay_s
        self.in_hand = in_hand
        self.on_batch = on_batch
        self._batch = Batch()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, msg: Msg, decoded: Decoded, seq: int) -> None:
        """The per-message hot path: keep it to appends and counters."""
        b = self._batch
        points = decoded.points
        n = len(points)
        if n:
            b.points += points
            b.seqs += [seq] * n
        entry = (msg, decoded, seq)
        entries = b.entries
        entries.append(entry)
        b.readings += decoded.readings
        if decoded.rejections:
            b.rejected.append(entry)
        hand = self.in_hand
        hand.msgs += 1
        hand.points += n
        if len(b.points) >= self.batch_size or len(entries) >= self.batch_size:
            self.flush()
        elif len(entries) == 1:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, Batch()
        if batch.entries:
            hand = self.in_hand  # the pull size follows the points a message carries
            per = max(1.0, len(batch.points) / len(batch.entries))
            hand.points_per_msg += (per - hand.points_per_msg) * 0.5
            self.on_batch(batch)
