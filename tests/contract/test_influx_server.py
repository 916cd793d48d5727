"""InfluxDB-only behaviour against the real server: outages, restarts, what is stored.

The shared contract (test_store_contract.py) says *what* every store does; these tests
pin the InfluxDB-specific promises the docs make (docs/influxdb.md).
"""

from __future__ import annotations

import uuid

import polars as pl
import pytest

from telemetry_core.store import StoreUnavailable, open_store
from telemetry_core.store.influx.http import InfluxRequestError
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
    assert raw[0].values == [[T0 + 1, 0, 1.5]]  # seqs=None: sequence 0, alone: not packed
    (writers,) = store.query('SELECT * FROM "writers"')
    assert writers[0].columns == ["time", "id"] and len(writers[0].values[0][1]) == 16
    (rollup,) = store.query('SELECT * FROM "rollup_15m" GROUP BY *')
    row = dict(zip(rollup[0].columns, rollup[0].values[0], strict=True))
    assert row["time"] == T0 and row["count"] == 1 and row["is_work_hours"] == -1
    (marks,) = store.query('SELECT * FROM "late_windows" GROUP BY *')
    assert marks[0].tags == {"site_id": "site-a"} and marks[0].values[0][0] == T0
    (done,) = store.query('SELECT * FROM "rolled_up" GROUP BY *')
    assert done[0].tags == {"level": "15m", "site_id": "*"}
    store.close()


def test_type_conflict_is_a_clear_error_not_an_outage(influx_server, db):
    """A 4xx must not look like an outage (the daemon would retry it forever)."""
    store = open_store(f"influxdb://127.0.0.1:{influx_server.port}/{db}")
    store.write_points([(*KEY, T0 + 1, 1.0)])
    store._http.write('raw,device_id=x,field=f,measurement=m,site_id=s value="text" 5\n')
    with pytest.raises(InfluxRequestError, match="conflict"):
        store._http.write("raw,device_id=x,field=f,measurement=m,site_id=s value=1.0 6\n")
    store.close()


def _race(url: str, *, verify: bool) -> tuple[float, object]:
    """The race the verifier exists for: writer A (seq 98) reads "not stored", writer B
    (seq 100) writes and is acknowledged, then A's write lands on top of B's."""
    a, b = open_store(url), open_store(url)
    a.write_points([(*KEY, T0 - 5, 0.0)], seqs=[1])  # A joins first (alone for now)
    if not verify:  # B believes it is alone: no token, no check (the old behaviour)
        b._registry.others = lambda query: set()
    b.write_points([(*KEY, T0 - 4, 0.0)], seqs=[2])  # B joins; with A live it settles
    admit = a._pre.admit

    def admit_then_let_b_write(query, rows, seqs):
        out = admit(query, rows, seqs)  # A has read: nothing stored at T0 + 1
        b.write_points([(*KEY, T0 + 1, 100.0)], seqs=[100])
        return out

    a._pre.admit = admit_then_let_b_write
    a.write_points([(*KEY, T0 + 1, 98.0)], seqs=[98])
    a.close()
    b.close()  # waits out B's window, then checks
    reader = open_store(url)
    value = reader.read_points(T0, T0 + W)["value"].to_list()
    reader.close()
    return value, b.order_stats


def test_a_newer_write_overwritten_by_a_racing_older_one_is_repaired(influx_server, db):
    url = f"influxdb://127.0.0.1:{influx_server.port}/{db}?order_window=0.5"
    value, stats = _race(url, verify=True)
    assert value == [100.0]
    assert stats.examined == 1 and stats.repaired == 1 and stats.unverified == []


def test_without_the_check_the_race_loses_the_newer_value(influx_server, db):
    """The control: the same interleaving with B's check switched off ends wrong, so the
    test above can fail."""
    url = f"influxdb://127.0.0.1:{influx_server.port}/{db}?order_window=0.5"
    value, stats = _race(url, verify=False)
    assert value == [98.0]
    assert stats.verified == 0


def test_a_lone_writer_reads_only_what_may_exist_and_never_verifies(influx_server, db):
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
    assert store.order_stats.verified == 0 and store._verifier.pending() == 0
    store.close()
