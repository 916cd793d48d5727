"""The store writer commits batches that queued behind a busy writer together, answers
each batch after that commit, and splits a refused group back into its batches."""

from __future__ import annotations

import asyncio
import threading

from ingest_daemon.metrics import Metrics
from ingest_daemon.writer import Refused, StoreWriter
from telemetry_core.store import StoreRefused, WriteResult


class SlowStore:
    """Records every write_points call; the first waits until released; refuses any call
    holding a point of value -1."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.release = threading.Event()

    def write_points(self, points, *, seqs=None, late_cutoff_ns=None):
        if not self.calls:
            self.release.wait(10)
        self.calls.append([p[5] for p in points])
        if -1.0 in self.calls[-1]:
            raise StoreRefused("no")
        return WriteResult(len(points))

    def ping(self) -> None: ...

    def close(self) -> None: ...


def _batch(values: list[float]):
    points = [("energy", "site-a", "m-1", "power_w", 1_000 + i, v) for i, v in enumerate(values)]
    return points, list(range(len(values)))


def test_queued_batches_are_committed_together_and_a_refusal_is_split():
    store = SlowStore()
    writer = StoreWriter(store, Metrics(), grace_ns=0)  # type: ignore[arg-type]

    async def scenario():
        first = asyncio.ensure_future(writer.write(*_batch([1.0])))
        await asyncio.sleep(0.1)  # the writer is busy with the first batch
        queued = [asyncio.ensure_future(writer.write(*_batch(v))) for v in ([2.0], [3.0, 4.0])]
        refused = [asyncio.ensure_future(writer.write(*_batch(v))) for v in ([5.0], [-1.0])]
        await asyncio.sleep(0.1)
        store.release.set()
        return await asyncio.gather(first, *queued, *refused, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
    finally:
        writer.close()
    # one commit for the first batch, one for the four queued, refused: split in two
    assert store.calls == [[1.0], [2.0, 3.0, 4.0, 5.0, -1.0], [2.0], [3.0, 4.0], [5.0], [-1.0]]
    assert [r.points for r in results[:4]] == [1, 1, 2, 1]
    assert isinstance(results[4], Refused)
