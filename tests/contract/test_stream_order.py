"""Store contract, stream order: the value that wins is the one from the message later in
the stream (its JetStream sequence), whatever order writes arrive in.

Runs on every backend (``backend`` fixture). ``seqs`` runs parallel to the points.
"""

from __future__ import annotations

import random
import threading

from telemetry_core.windows import HOUR_NS

T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS
X = ("energy", "site-a", "meter-1", "power_w")
Y = ("energy", "site-b", "meter-2", "energy_kwh")


def _values(store, start=T0, end=T0 + HOUR_NS) -> dict[tuple, float]:
    df = store.read_points(start, end)
    return {(m, s, d, f, t): v for t, m, s, d, f, v in df.rows()}


def test_older_after_newer_keeps_newer(backend):
    """A message redelivered after a crash (seq 98) must not undo the rewrite (seq 100)."""
    store = backend.store
    store.write_points([(*X, T0 + 1, 100.0), (*Y, T0 + 2, 1.0)], seqs=[100, 100])
    store.write_points([(*X, T0 + 1, 98.0), (*Y, T0 + 2, 2.0)], seqs=[98, 101])
    assert _values(store) == {(*X, T0 + 1): 100.0, (*Y, T0 + 2): 2.0}
    store.write_points([(*X, T0 + 1, 102.0)], seqs=[102])  # newer still replaces
    assert _values(store)[(*X, T0 + 1)] == 102.0
    assert store.read_points(T0, T0 + HOUR_NS).columns == [
        "time", "measurement", "site_id", "device_id", "field", "value"
    ]  # fmt: skip


def test_in_call_highest_seq_wins_and_ties_go_to_the_later_point(backend):
    store = backend.store
    store.write_points(
        [(*X, T0 + 1, 7.0), (*X, T0 + 1, 9.0), (*X, T0 + 1, 8.0), (*Y, T0 + 1, 1.0),
         (*Y, T0 + 1, 2.0), (*X, T0 + 2, 1.0), (*X, T0 + 2, 2.0)],
        seqs=[7, 9, 8, 5, 5, 3, 4],
    )  # fmt: skip
    assert _values(store) == {(*X, T0 + 1): 9.0, (*Y, T0 + 1): 2.0, (*X, T0 + 2): 2.0}
    # the same with non-decreasing sequences (the daemon's usual batch)
    store.write_points([(*Y, T0 + 3, 1.0), (*Y, T0 + 3, 2.0), (*Y, T0 + 3, 3.0)], seqs=[1, 2, 2])
    assert _values(store)[(*Y, T0 + 3)] == 3.0


def test_equal_seq_replaces(backend):
    """A redelivery of the same message (same sequence) rewrites its own value."""
    store = backend.store
    store.write_points([(*X, T0 + 5, 1.0)], seqs=[10])
    store.write_points([(*X, T0 + 5, 2.0)], seqs=[10])
    assert _values(store) == {(*X, T0 + 5): 2.0}


def test_seqs_none_is_sequence_zero(backend):
    """Writes from outside the stream never replace a value that came from the stream,
    and replace each other (the later write wins)."""
    store = backend.store
    store.write_points([(*X, T0 + 1, 1.0), (*Y, T0 + 1, 1.0)])
    store.write_points([(*X, T0 + 1, 2.0), (*Y, T0 + 1, 2.0)])
    assert _values(store) == {(*X, T0 + 1): 2.0, (*Y, T0 + 1): 2.0}
    store.write_points([(*X, T0 + 1, 3.0)], seqs=[1])
    store.write_points([(*X, T0 + 1, 4.0), (*Y, T0 + 1, 4.0)])
    store.write_points([(*Y, T0 + 1, 5.0)], seqs=[0])
    assert _values(store) == {(*X, T0 + 1): 3.0, (*Y, T0 + 1): 5.0}


def _versions(n_ids: int, per_id: int, seed: int) -> list[tuple[tuple, int]]:
    """``per_id`` versions of each of ``n_ids`` identities; the value names its seq."""
    rng = random.Random(seed)
    seqs = rng.sample(range(1, 10 * n_ids * per_id), n_ids * per_id)
    out = []
    for i, seq in enumerate(seqs):
        key = (X, Y)[i % 2]
        out.append(((*key, T0 + (i % n_ids) * 1_000_003, float(seq)), seq))
    rng.shuffle(out)
    return out


def test_interleaved_writers_end_with_the_highest_sequence(backend):
    """Two store objects (two daemons) write versions of the same identities in shuffled
    order at the same time; once both are closed every identity holds its highest seq."""
    versions = _versions(n_ids=200, per_id=4, seed=3)
    other = backend.another()
    stores = [backend.store, other]
    for store in stores:  # both are live writers before the race starts
        store.write_points([(*X, T0 - 1, 0.0)], seqs=[1])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            start.wait()
            mine = versions[k::2]
            for i in range(0, len(mine), 10):
                batch = mine[i : i + 10]
                stores[k].write_points([p for p, _ in batch], seqs=[q for _, q in batch])
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)
            raise

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    other.close()  # a closed writer has checked (and repaired) everything it wrote
    backend.store.close()
    reader = backend.another()
    try:
        best: dict[tuple, float] = {}
        for p, seq in versions:
            if seq > best.get(p[:5], -1.0):
                best[p[:5]] = float(seq)
        got = _values(reader)
        assert len(got) == len(best) == 200
        wrong = {k: (got[k], v) for k, v in best.items() if got[k] != v}
        assert not wrong
    finally:
        reader.close()
