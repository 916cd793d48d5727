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
  redeliveries 107-168k/s, rewrites 42-69k/s.
"""

from telemetry_core.store.postgres.raw import PostgresStore

__all__ = ["PostgresStore"]
