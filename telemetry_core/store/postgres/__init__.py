"""The PostgreSQL store (``postgresql://user[:password]@host[:port]/<database>``, also
``postgres://``): the production store, any number of daemons writing at once.

``raw.py`` raw points (the store class), ``late.py`` late windows, ``rollups.py`` the
rollup tables, ``retention.py`` retention's primitives, ``connection.py`` the connection, its
transaction and error translation, ``schema.py`` the layout and raw's day partitions.

Stream order is kept by the database: the merge only replaces a stored point with one
whose JetStream sequence is not lower, so redeliveries and a second daemon committing out
of order never bring an older value back.

Choices and what they were measured at (``bench/bench_postgres_store.py``: PostgreSQL 15
on the shared, loaded 2-core machine, one day of 720,000 points from 500 devices, batches
of 10,000; ranges over three runs):

* Indexes on raw: the primary key ``(series_id, time)`` serves everything per series (a
  filtered ``read_points``: 4-9 ms for a 15-minute window of one site with or without a
  time index; the first/last join-back of ``aggregate_raw``). A whole-window scan
  (``aggregate_raw`` of every series) cannot use it: a BRIN index on ``time`` makes that
  14-23 ms against 109-129 ms for a sequential scan of the day partition. A btree on time
  was 8-18 ms, but it is 15.8 MB per day against the BRIN's 24 kB (the primary key is
  26.9 MB) and every insert maintains it; a few ms per window read do not pay for that
  on the write path, the one that must keep up. BRIN works because the daemon writes
  roughly in time order; ``autosummarize`` keeps its summaries current.
* Partitions: one per UTC day, created by the writer for each day it writes plus the
  next day (ahead: the partition exists before anyone writes into it), in a short
  transaction of its own under an advisory lock, never inside the write. Creating one
  waits for every reader of ``raw`` (measured: a reader's open transaction blocks it),
  so creation gives up after 2 s: the write is then an outage if it needs that day, and
  goes on if only the day ahead was missing (tried again a minute later). Retention drops
  a day's table when every row in it is being deleted.
* Upsert condition: ``excluded.seq > raw.seq OR (excluded.seq = raw.seq AND the value
  differs bit for bit)``. An exact redelivery of 100,000 points wrote 0 rows (counted by
  ``xmin``; a plain ``>=`` rewrites every one and leaves as many dead tuples), a rewrite
  with a higher sequence wrote all 100,000. Throughput: 52-159k new points/s, exact
  redeliveries 107-168k/s, rewrites 42-69k/s (before the append below).

Ingest and rollup choices (``bench/bench_postgres.py`` and one-off measurements on the
same machine, December 2026; load averages given, since other jobs shared the 2 cores):

* The append (``raw.py``): a batch of new points goes straight into ``raw`` by binary
  ``COPY`` in a savepoint, and falls back to the staging merge when any identity is already
  stored or repeated. Per 5,000-point batch at load 1: 12 ms and 11-13 ms of server CPU
  against 23 ms and 19-21 ms for COPY to staging + merge; through ``write_points``
  290-300k points/s against 185-190k (alternating runs). A savepoint that fails leaves
  dead tuples (the points before the first stored one), so the 16 batches after a
  fallback merge directly.
* The writer thread's Python per batch is GIL the daemon's event loop waits for: the
  validation pass is column-wise (``itemgetter``, ``Counter``: 1.3 ms per 5,000 points
  against 3.0 ms for the per-point loop); ``write_row`` stays (1.8 ms per 5,000 rows; a
  hand-packed ``struct`` buffer saved 0.5 ms, not worth its code).
* ``aggregate_raw`` in one pass: first/last as min/max of a ``float8[]`` of the time's two
  32-bit halves and the value (exact; ``min(bytea)`` does not exist in PostgreSQL 15,
  ``float8`` arrays do). One day of the reference fleet (1.15 M values), one backend, no
  parallel workers: 0.52-0.56 s against 1.28-1.32 s for the aggregate + two hash joins
  back on min/max time, and 0.27-0.34 s for min/max time alone (so the arrays cost about
  half the statement). The reference week, serial: 3.6 s of backend CPU against 6.4 s for
  the previous statement (its merge joins scanned raw's primary key twice, 3.4 s, and its
  plan spent 1.4 s compiling JIT, and spilled its hash aggregate at ``work_mem = 4MB``).
  One ``GROUP BY`` per day partition (38,400 groups each) rather than one over the week:
  2.2-2.3 s with two parallel workers against 2.6 s, and 2.15 s with the planner's partial
  partitionwise aggregation.
* Frames by ``COPY ... TO STDOUT (FORMAT CSV)`` parsed by polars (``copy_frame``): the
  week's 268,800 rows of ``rollup_15m`` read with 0.37-0.42 s of client CPU against
  0.86-0.96 s as text tuples and 0.71 s as binary tuples. Rollups are written as a CSV
  polars makes: client CPU of the week's ``rollup_15m`` replace 0.23 s against 0.5-0.66 s
  with ``write_row``; the server's side (delete 0.17 s, then COPY 1.4 s through a primary
  key full of the deleted rows' entries, 0.9 s into an empty one) is unchanged.
"""

from telemetry_core.store.postgres.raw import PostgresStore

__all__ = ["PostgresStore"]
