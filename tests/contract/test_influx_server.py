"""InfluxDB-only behaviour against the real server: outages, restarts, what is stored.

The shared contract (test_store_contract.py) says *what* every store does; these tests
pin the InfluxDB-specific promises the docs make (docs/influxdb.md).
"""

from __future__ import annotations

import time
import uuid

import polars as pl
import pytest

from telemetry_core.store import StoreError, StoreRefused, StoreUnavailable, open_store
from telemetry_core.windows import WINDOW_15M_NS

W = WINDOW_15M_NS
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % W
KEY = ("energy", "site-a", "meter-1", "power_w")


@pytest.fixture
def db(influx_server):
    name = f"server_{uuid.uuid4().hex[:12]}"
    yield name
    influx_server.drop(name)


def test_outage_is_unavailable_and_the_same_store_recovers(influx_server, db):
    """The daemon keeps its store object across an outage: a dead keep-alive connection
    must turn into StoreUnavailable, and the next write after the restart must work."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    store.write_points([(*KEY, T0 + 1, 1.0)])
    influx_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            store.write_points([(*KEY, T0 + 2, 2.0)])
        with pytest.raises(StoreUnavailable):
            store.ping()
    finally:
        influx_server.start()
    store.write_points([(*KEY, T0 + 2, 2.0)])
    assert store.read_points(T0, T0 + W)["value"].to_list() == [1.0, 2.0]
    store.close()


def test_layout_as_documented(influx_server, db):
    """What an operator sees with the influx CLI or Grafana: docs/influxdb.md."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    store.write_points([(*KEY, T0 + 1, 1.5)], late_cutoff_ns=T0 + 2 * W)
    rows = store.aggregate_raw(T0, T0 + W, W).with_columns(
        pl.lit(None, dtype=pl.Boolean).alias("is_work_hours")
    )
    store.replace_rollups("15m", T0, T0 + W, rows)
    (raw,) = store.query('SELECT * FROM "raw" GROUP BY *')
    assert raw[0].tags == {
        "device_id": "meter-1", "field": "power_w", "measurement": "energy", "site_id": "site-a"
    }  # fmt: skip
    assert raw[0].columns == ["time", "seq", "value"]
    assert raw[0].values == [[T0 + 1, 0, 1.5]]  # seqs=None: sequence 0
    (measurements,) = store.query("SHOW MEASUREMENTS")
    names = [row[0] for s in measurements for row in s.values]
    assert names == ["late_windows", "raw", "rolled_up", "rollup_15m"]  # no "writers" now
    (rollup,) = store.query('SELECT * FROM "rollup_15m" GROUP BY *')
    row = dict(zip(rollup[0].columns, rollup[0].values[0], strict=True))
    assert row["time"] == T0 and row["count"] == 1 and row["is_work_hours"] == -1
    (marks,) = store.query('SELECT * FROM "late_windows" GROUP BY *')
    assert marks[0].tags == {"site_id": "site-a"} and marks[0].values[0][0] == T0
    (done,) = store.query('SELECT * FROM "rolled_up" GROUP BY *')
    assert done[0].tags == {"level": "15m", "site_id": "*"}
    store.close()


def test_type_conflict_is_a_refusal_not_an_outage(influx_server, db):
    """A 400 for the data must be StoreRefused (the daemon dead-letters on it), not an
    outage (the daemon would retry it forever)."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    later = T0 + 30 * 96 * W  # a shard of its own, where "value" becomes a string first
    tags = "device_id=meter-1,field=power_w,measurement=energy,site_id=site-a"
    store.write_points([(*KEY, T0 + 1, 1.0)])
    store._http.write(f'raw,{tags} value="x" {later}\n')
    with pytest.raises(StoreRefused, match="conflict"):
        store.write_points([(*KEY, later + 1, 1.0)])
    store.close()


def test_a_redelivered_older_message_never_overwrites_a_newer_rewrite(influx_server, db):
    """The one writer's read before its write, with no sleep and no later check: seq 98
    redelivered after seq 100 rewrote the identity is dropped, also from a second store
    object in the same process (both share the database's one raw writer)."""
    url = f"influxdb://127.0.0.1:{influx_server.port}/{db}"
    a, b = open_store(url), open_store(url)
    a.write_points([(*KEY, T0 + 1, 1.0), (*KEY, T0 + 2, 2.0)], seqs=[1, 2])
    b.write_points([(*KEY, T0 + 1, 100.0)], seqs=[100])  # b rewrites; a never learnt of it
    t = time.monotonic()
    a.write_points([(*KEY, T0 + 1, 98.0), (*KEY, T0 + 3, 3.0)], seqs=[98, 99])
    assert time.monotonic() - t < 1.0  # no settle sleep on the write path
    assert a.read_points(T0, T0 + W)["value"].to_list() == [100.0, 2.0, 3.0]
    assert a.superseded == 1
    a.close()
    b.close()


def test_two_stores_in_one_process_write_one_at_a_time(influx_server, db):
    """The read before a write and the write are one step per database: while one store
    object is between them, another one's write waits (the control for the test above)."""
    import threading

    url = f"influxdb://127.0.0.1:{influx_server.port}/{db}"
    a, b = open_store(url), open_store(url)
    a.write_points([(*KEY, T0 - 5, 0.0)], seqs=[1])
    admit = a._pre.admit
    order: list[str] = []

    def b_writes() -> None:
        b.write_points([(*KEY, T0 + 1, 100.0)], seqs=[100])
        order.append("b wrote")

    def admit_then_let_b_try(query, rows, seqs, keys):
        out = admit(query, rows, seqs, keys)  # a has read: nothing stored at T0 + 1
        thread = threading.Thread(target=b_writes)
        thread.start()
        thread.join(0.5)  # b must not get through while a is between read and write
        order.append("a writes")
        admit_then_let_b_try.thread = thread
        return out

    a._pre.admit = admit_then_let_b_try
    a.write_points([(*KEY, T0 + 1, 98.0)], seqs=[98])
    a._pre.admit = admit
    admit_then_let_b_try.thread.join()
    assert order == ["a writes", "b wrote"]
    assert a.read_points(T0, T0 + W)["value"].to_list() == [100.0]
    a.close()
    b.close()


def test_order_window_is_refused_with_the_reason(influx_server, db):
    with pytest.raises(StoreError, match=r"order_window.*one ingest daemon per database"):
        open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}?order_window=2")


def test_retention_deletes_on_1x_and_the_load_check_passes(influx_server, db):
    """The working path on a real 1.6.7: the load-time check finds nothing wrong and a
    retention delete removes exactly the windows asked for."""
    from telemetry_core.store import check_retention

    url = f"influxdb://127.0.0.1:{influx_server.port}/{db}"
    check_retention(url)
    store = open_store(url)
    store.write_points([(*KEY, T0 + 1, 1.0), (*KEY, T0 + W + 1, 2.0)])
    counts = store.retention_counts(None, T0, T0 + 2 * W)
    assert counts == {T0: 1, T0 + W: 1}
    assert store.retention_delete(None, {T0: 1}) == {T0: 1}
    assert store.read_points(T0, T0 + 2 * W)["value"].to_list() == [2.0]
    store.close()


def test_a_lone_writer_reads_only_what_may_exist(influx_server, db):
    """The cheap path: streaming batches of new points cost no read of raw points; a
    redelivered older message is dropped by the read before the write."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    statements: list[str] = []
    query = store.query
    store.query = lambda q: statements.append(q) or query(q)
    for k in range(5):  # five streaming batches, times moving forward
        store.write_points([(*KEY, T0 + k * 10 + i, float(i)) for i in range(10)],
                           seqs=list(range(k * 10, k * 10 + 10)))  # fmt: skip
    point_reads = [q for q in statements if q.startswith('SELECT "seq"')]
    assert point_reads == []  # no identity could exist: nothing read back
    assert sum('last("seq")' in q for q in statements) == 1  # learnt once
    store.write_points([(*KEY, T0 + 3, -1.0), (*KEY, T0 + 4, -1.0)], seqs=[2, 99])
    assert [q for q in statements if q.startswith('SELECT "seq"')]  # now it reads
    assert store.superseded == 1
    values = store.read_points(T0, T0 + W)["value"].to_list()
    assert values[3:5] == [3.0, -1.0] and len(values) == 50
    store.close()


def test_a_batch_in_parts_drops_only_superseded_points(influx_server, db):
    """6,000 points go in three parts; a stale point in the second part is dropped and every
    other point of every part is stored."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    store.write_points([(*KEY, T0 + 3000, 100.0)], seqs=[100])
    batch = [(*KEY, T0 + i, float(i)) for i in range(6000)]
    seqs = [1000 + i for i in range(6000)]
    seqs[3000] = 50  # a redelivered older message: the stored seq 100 wins
    store.write_points(batch, seqs=seqs)
    values = store.read_points(T0, T0 + W)["value"].to_list()
    assert len(values) == 6000 and values[3000] == 100.0
    assert values[:3000] == [float(i) for i in range(3000)] and values[5999] == 5999.0
    assert store.superseded == 1
    store.close()
