"""What only the PostgreSQL store promises, beyond the shared contract: retention drops
whole day partitions, concurrent writers neither deadlock nor lose stream order (and race
to create the same partitions safely), a killed server connection is an outage the store
recovers from, refused data is ``StoreRefused``, and the password never shows."""

from __future__ import annotations

import random
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from telemetry_core.store import StoreError, StoreRefused, StoreUnavailable, open_store
from telemetry_core.store.postgres.schema import partition_name
from telemetry_core.windows import DAY_NS, WINDOW_15M_NS

W = WINDOW_15M_NS
DAY = 1_795_000_000_000_000_000 // DAY_NS  # a day in 2026
T0 = DAY * DAY_NS
KEY = ("energy", "site-a", "meter-1", "power_w")


@pytest.fixture
def store(postgres_url):
    s = open_store(postgres_url)
    yield s
    s.close()


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'raw'::regclass"
        ).fetchall()
    return {name for (name,) in rows}


def test_retention_drops_a_whole_day_partition(store, postgres_url):
    # every window of day 0 holds points; day 1 and day 2 a few
    points = [(*KEY[:3], f"f{i % 3}", T0 + w * W + i, float(i)) for w in range(96) for i in (1, 2)]
    points += [(*KEY, T0 + DAY_NS + 5, 1.0), (*KEY, T0 + 2 * DAY_NS + W + 5, 2.0)]
    points += [(*KEY, T0 + 2 * DAY_NS + 3 * W, 5.0)]
    store.write_points(points)
    day0, day1, day2 = (partition_name(DAY + k) for k in range(3))
    assert {day0, day1, day2} <= _tables(postgres_url)
    counts = store.retention_counts(None, T0, T0 + DAY_NS)
    assert len(counts) == 96 and sum(counts.values()) == 192
    assert store.retention_delete(None, counts) == counts
    tables = _tables(postgres_url)
    assert day0 not in tables and {day1, day2} <= tables  # dropped, not emptied
    assert store.read_points(T0, T0 + 3 * DAY_NS)["time"].to_list() == [
        T0 + DAY_NS + 5,
        T0 + 2 * DAY_NS + W + 5,
        T0 + 2 * DAY_NS + 3 * W,
    ]
    assert store.retention_oldest(None, T0 + 3 * DAY_NS) == T0 + DAY_NS + 5
    # part of a day: rows deleted, the partition stays
    assert store.retention_delete(None, {T0 + 2 * DAY_NS + W: 1}) == {T0 + 2 * DAY_NS + W: 1}
    assert day2 in _tables(postgres_url)
    assert store.read_points(T0 + 2 * DAY_NS, T0 + 3 * DAY_NS)["value"].to_list() == [5.0]
    # the rest of that day: dropped
    assert store.retention_delete(None, {T0 + 2 * DAY_NS + 3 * W: 1}) == {
        T0 + 2 * DAY_NS + 3 * W: 1
    }
    assert day2 not in _tables(postgres_url)
    # a write into the dropped day (another process's cache) recreates it
    other = open_store(postgres_url)
    try:
        other.write_points([(*KEY, T0 + 7, 3.0)])
    finally:
        other.close()
    assert day0 in _tables(postgres_url)
    store.write_points([(*KEY, T0 + 8, 4.0)])  # this store thought day 0 was gone: fine
    assert store.read_points(T0, T0 + W)["value"].to_list() == [3.0, 4.0]


def test_day_with_a_window_written_since_it_was_counted_is_not_dropped(store, postgres_url):
    store.write_points([(*KEY, T0 + w * W, 1.0) for w in range(4)])
    counts = store.retention_counts(None, T0, T0 + DAY_NS)
    store.write_points([(*KEY, T0 + 3 * W + 1, 2.0)])  # after the count
    assert store.retention_delete(None, counts) == {T0: 1, T0 + W: 1, T0 + 2 * W: 1}
    assert partition_name(DAY) in _tables(postgres_url)
    assert store.read_points(T0, T0 + DAY_NS).height == 2


def test_two_writers_interleaving_close_rewrites_never_deadlock(postgres_url):
    """Two store objects in two threads write overlapping batches of the same identities
    in opposite key orders, onto days nobody created yet: no deadlock, no failed
    partition creation, and every identity ends with its highest sequence."""
    rng = random.Random(5)
    idents = [(*KEY[:2], f"meter-{i % 20}", KEY[3], T0 + (i % 7) * DAY_NS + i) for i in range(600)]
    versions = [(ident, rng.randrange(1, 10**9)) for ident in idents for _ in range(4)]
    rng.shuffle(versions)
    best: dict[tuple, int] = {}
    for ident, seq in versions:
        best[ident] = max(best.get(ident, 0), seq)
    stores = [open_store(postgres_url), open_store(postgres_url)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            start.wait()
            mine = versions[k::2]
            for i in range(0, len(mine), 150):
                batch = sorted(mine[i : i + 150], reverse=bool(k))  # opposite orders
                stores[k].write_points(
                    [(*ident, float(seq)) for ident, seq in batch], seqs=[q for _, q in batch]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in stores:
        s.close()
    assert not errors, errors
    reader = open_store(postgres_url)
    try:
        got = {(m, s, d, f, t): v for t, m, s, d, f, v in reader.read_points(0, 2**62).rows()}
    finally:
        reader.close()
    assert got == {ident: float(seq) for ident, seq in best.items()}


def test_a_terminated_connection_is_an_outage_then_the_store_works_again(store, postgres_url):
    store.write_points([(*KEY, T0 + 1, 1.0)])
    database = urlsplit(postgres_url).path.lstrip("/")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'telemetry-store'",
            (database,),
        ).fetchone()[0]
    assert killed == 1
    with pytest.raises(StoreUnavailable):
        store.write_points([(*KEY, T0 + 2, 2.0)])
    store.write_points([(*KEY, T0 + 2, 2.0)])  # reconnected
    store.ping()
    assert store.read_points(T0, T0 + W)["value"].to_list() == [1.0, 2.0]


def test_refused_data_is_store_refused_and_the_store_goes_on(store):
    with pytest.raises(StoreRefused):
        store.write_points([(*KEY, 2**63, 1.0)])  # past int64 nanoseconds
    with pytest.raises(StoreRefused):
        store.write_points([(*KEY, T0 + 1, 1.0)], seqs=[2**64])  # a sequence bigint can't hold
    store.write_points([(*KEY, T0 + 1, 1.0)])
    assert store.read_points(T0, T0 + W).height == 1


def test_the_password_never_shows(postgres_url):
    parts = urlsplit(postgres_url)
    secret = "s3cr3t-Pw"
    netloc = f"{parts.username or 'postgres'}:{secret}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc))
    store = open_store(url)  # trust authentication: any password works
    try:
        store.write_points([(*KEY, T0 + 1, 1.0)])
        assert secret not in repr(store) and secret not in str(store)
        assert "***" in repr(store)
    finally:
        store.close()
    closed = urlunsplit(parts._replace(netloc=f"postgres:{secret}@127.0.0.1:9"))
    down = open_store(closed)
    with pytest.raises(StoreUnavailable) as info:
        down.ping()
    assert secret not in str(info.value) and secret not in repr(down)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:s3cr3t-Pw@[::1/db",  # libpq quotes the whole URL back
        "postgresql://u:s3cr%zz@h/db",  # ... or the token it could not decode
        "postgresql://u:s3cr3t-Pw@h/db?nope=1",
    ],
)
def test_a_bad_url_is_a_store_error_without_the_password(url):
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "s3cr" not in str(info.value) and "***" in str(info.value)


def test_postgres_scheme_and_libpq_environment(postgres_url, monkeypatch):
    """``postgres://`` works, and what the URL leaves out comes from libpq's variables."""
    parts = urlsplit(postgres_url)
    monkeypatch.setenv("PGHOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(parts.port or 5432))
    monkeypatch.setenv("PGUSER", parts.username or "postgres")
    store = open_store(f"postgres:///{parts.path.lstrip('/')}")
    try:
        store.write_points([(*KEY, T0 + 1, 1.0)])
        assert store.read_points(T0, T0 + W).height == 1
    finally:
        store.close()


def test_windows_before_1970_use_floor_buckets(store):
    """Times before the epoch (negative ns) land in the window that starts at or before
    them, as polars' maths does: the day partition of 1969-12-31 included."""
    points = [(*KEY, -1, 1.0), (*KEY, -W, 2.0), (*KEY, -W - 1, 3.0), (*KEY, 0, 4.0)]
    store.write_points(points)
    agg = store.aggregate_raw(-2 * W, W, W)
    assert agg.select("window_start", "count", "first", "last").rows() == [
        (-2 * W, 1, 3.0, 3.0),
        (-W, 2, 2.0, 1.0),
        (0, 1, 4.0, 4.0),
    ]
    assert store.retention_counts(None, -2 * W, W) == {-2 * W: 1, -W: 2, 0: 1}
    assert store.read_points(-W, 0)["time"].to_list() == [-W, -1]


def test_a_read_only_server_is_an_outage(postgres_url):
    database = urlsplit(postgres_url).path.lstrip("/")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    store = open_store(postgres_url)
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.ping()
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.write_points([(*KEY, T0 + 1, 1.0)])
    finally:
        store.close()


def test_a_writer_whose_partition_was_dropped_by_another_process_recreates_it(store, postgres_url):
    store.write_points([(*KEY, T0 + 1, 1.0)])  # this store now knows day 0 exists
    other = open_store(postgres_url)
    try:
        assert other.retention_delete(None, {T0: 1}) == {T0: 1}
    finally:
        other.close()
    assert partition_name(DAY) not in _tables(postgres_url)
    store.write_points([(*KEY, T0 + 2, 2.0)])  # "no partition for the row": asks again
    assert store.read_points(T0, T0 + W)["value"].to_list() == [2.0]


def test_a_long_reader_delays_only_the_day_ahead(postgres_url):
    """A reader holding ``raw`` blocks partition creation. A write into an existing day
    goes on without the day ahead (tried again later); a write into a day without a
    partition is an outage until the reader is done."""
    setup = open_store(postgres_url)
    setup.write_points([(*KEY, T0 - DAY_NS, 1.0)])  # the schema
    setup.close()
    d10 = DAY + 10
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {partition_name(d10)} PARTITION OF raw "
            f"FOR VALUES FROM ({d10 * DAY_NS}) TO ({(d10 + 1) * DAY_NS})"
        )
    store = open_store(postgres_url)
    reader = psycopg.connect(postgres_url)
    try:
        reader.execute("SELECT count(*) FROM raw").fetchone()  # holds its lock until commit
        store.write_points([(*KEY, d10 * DAY_NS + 1, 1.0)])
        assert partition_name(d10 + 1) not in _tables(postgres_url)
        with pytest.raises(StoreUnavailable, match="lock timeout"):
            store.write_points([(*KEY, (DAY + 20) * DAY_NS + 1, 2.0)])
        reader.commit()
        store.write_points([(*KEY, (DAY + 20) * DAY_NS + 1, 2.0)])
        assert {partition_name(DAY + 20), partition_name(DAY + 21)} <= _tables(postgres_url)
        assert store.read_points(d10 * DAY_NS, (DAY + 21) * DAY_NS).height == 2
    finally:
        reader.close()
        store.close()


def test_aggregate_raw_is_exact_across_days_widths_and_extremes(store, postgres_url):
    """aggregate_raw's one-pass first/last (min/max of a float8 array of the time's two
    halves and the value), its per-day GROUP BYs and its CSV fetch give polars' partials
    bit for bit: -0.0, subnormals, infinities and 17-digit values, times far before 1970
    and near the int64 ends, ranges over several days, a width that does not divide a day,
    and a server whose extra_float_digits would print rounded floats."""
    import math
    import struct

    import polars as pl

    from telemetry_core.rollup import rollup_raw

    database = urlsplit(postgres_url).path.lstrip("/")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET extra_float_digits = 0')
    rng = random.Random(5)
    odd = [-0.0, 5e-324, -2.2250738585072014e-308, float("inf"), float("-inf"), 0.1, 1 / 3]
    points = []
    for d in range(3):
        for i in range(300):
            t = T0 + d * DAY_NS + rng.randrange(DAY_NS)
            v = (
                odd[i]
                if i < len(odd)
                else struct.unpack("<d", struct.pack("<q", rng.getrandbits(63)))[0]
            )
            points.append((*KEY[:3], f"f{i % 2}", t, v))
    edges = [-(2**63) + 2 * DAY_NS + 1, -(10**18), -1, 2**63 - 2, 2**63 - 1]  # floor windows fit
    points += [(*KEY, t, float(k)) for k, t in enumerate(edges)]
    store.write_points(points)
    store.close()
    fresh = open_store(postgres_url)  # a new session: it takes the database's setting
    try:
        raw = pl.DataFrame(
            points, schema=["measurement", "site_id", "device_id", "field", "time", "value"],
            orient="row",
        )  # fmt: skip
        for width, lo, hi in [
            (W, T0, T0 + 3 * DAY_NS),  # three day partitions, one GROUP BY each
            (W, T0 + 5 * W + 7, T0 + DAY_NS + 3 * W),  # ragged ends
            (7 * W, T0, T0 + 3 * DAY_NS),  # does not divide a day: one GROUP BY
            (DAY_NS, -(2**63), 2**63 - 1),  # everything, the int64 ends included
        ]:
            want = rollup_raw(raw.filter((pl.col("time") >= lo) & (pl.col("time") < hi)), width)
            got = fresh.aggregate_raw(lo, hi, width)
            assert got.columns == want.columns
            for col in got.columns:
                g, w = got[col].to_list(), want[col].to_list()
                if col == "sum":  # summation order differs: close, not bit for bit
                    assert all(
                        x == y or math.isclose(x, y, rel_tol=1e-9) or (x != x and y != y)
                        for x, y in zip(g, w, strict=True)
                    ), (width, lo)
                    continue
                if got[col].dtype == pl.Float64:
                    g = [struct.pack("<d", x) for x in g]
                    w = [struct.pack("<d", x) for x in w]
                assert g == w, (width, lo, col)
    finally:
        fresh.close()


def test_the_append_fast_path_falls_back_to_the_merge_without_a_trace(store, postgres_url):
    """A batch goes straight into raw by COPY only when every identity in it is new and
    unique; one stored identity anywhere in it (or one twice in it) rolls the append's
    savepoint back and the merge decides, by sequence, for every point of the batch."""
    a = [(*KEY, T0 + i, float(i)) for i in range(100)]
    store.write_points(a, seqs=[10] * 100)  # all new: appended
    other = ("energy", "site-a", "meter-2", "power_w")
    # new points first, then stored identities: a lower sequence (kept out) and a
    # higher one (wins), then one new identity twice (the later point of the call wins)
    b = [(*other, T0 + i, 1000.0 + i) for i in range(50)]
    b += [(*KEY, T0 + 1, -1.0), (*KEY, T0 + 2, -2.0)]
    b += [(*other, T0 + 500, 1.0), (*other, T0 + 500, 2.0)]
    store.write_points(b, seqs=[10] * 50 + [9, 11, 12, 12])
    c = [(*other, T0 + 600 + i, 5.0) for i in range(3)] + [(*other, T0 + 600, 6.0)]
    store._merge_next = 0  # the next batch tries the append again: a duplicate inside it
    store.write_points(c, seqs=[13, 13, 13, 13])
    got = {(r[3], r[0]): r[5] for r in store.read_points(T0, T0 + DAY_NS).rows()}
    want = {("meter-1", T0 + i): float(i) for i in range(100)}
    want[("meter-1", T0 + 2)] = -2.0
    want |= {("meter-2", T0 + i): 1000.0 + i for i in range(50)}
    want |= {("meter-2", T0 + 500): 2.0, ("meter-2", T0 + 600): 6.0}
    want |= {("meter-2", T0 + 601): 5.0, ("meter-2", T0 + 602): 5.0}
    assert got == want
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), sum(seq) FROM raw").fetchone()
    assert row is not None and row[0] == len(want)
