"""The SQLite store's side of stream order: the sequence kept per raw point, the
conditional upsert, and the migration of a file written before sequences were kept.

(The behaviour every backend shares is in tests/contract; these are SQLite's own details.)
"""

from __future__ import annotations

import sqlite3

import pytest

from telemetry_core.store.sqlite import SqliteStore
from telemetry_core.store.sqlite.raw import ROWS_PER_STATEMENT

KEY = ("energy", "site-a", "meter-1", "power_w")
T = 1_795_000_000 * 10**9


def values(store: SqliteStore) -> dict[int, float]:
    return dict(zip(*store.read_points(0, 2**62).select("time", "value"), strict=True))


def test_an_older_sequence_never_replaces_a_newer_one(tmp_path):
    store = SqliteStore(str(tmp_path / "t.db"))
    store.write_points([(*KEY, T, 2.0)], seqs=[20])
    store.write_points([(*KEY, T, 1.0)], seqs=[10])  # redelivered older message
    assert values(store) == {T: 2.0}
    store.write_points([(*KEY, T, 3.0)], seqs=[20])  # a replay of the same message
    assert values(store) == {T: 3.0}
    store.write_points([(*KEY, T, 4.0)])  # outside the stream: sequence 0
    assert values(store) == {T: 3.0}


def test_within_one_call_the_highest_sequence_then_the_later_point_wins(tmp_path):
    store = SqliteStore(str(tmp_path / "t.db"))
    points = [
        (*KEY, T, 1.0),
        (*KEY, T, 2.0),
        (*KEY, T, 3.0),
        (*KEY, T + 1, 5.0),
        (*KEY, T + 1, 6.0),
    ]
    store.write_points(points, seqs=[3, 7, 6, 4, 4])
    assert values(store) == {T: 2.0, T + 1: 6.0}


def test_order_holds_across_statement_chunks(tmp_path):
    """More rows than one multi-row statement holds: the chunks run in order."""
    store = SqliteStore(str(tmp_path / "t.db"))
    n = ROWS_PER_STATEMENT + 10
    points = [(*KEY, T + i % 5, float(i)) for i in range(n)]
    store.write_points(points, seqs=list(range(n)))
    assert values(store) == {T + k: float(max(i for i in range(n) if i % 5 == k)) for k in range(5)}
    store.write_points(points[:5], seqs=[0] * 5)  # older than everything stored
    assert values(store) == {T + k: float(max(i for i in range(n) if i % 5 == k)) for k in range(5)}


def test_sequences_must_match_the_points(tmp_path):
    store = SqliteStore(str(tmp_path / "t.db"))
    with pytest.raises(ValueError, match="2 sequences for 1 points"):
        store.write_points([(*KEY, T, 1.0)], seqs=[1, 2])


def test_a_file_from_before_sequences_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the raw table as earlier versions created it
        db.execute(
            "CREATE TABLE raw (time INTEGER NOT NULL, series_id INTEGER NOT NULL, "
            "value REAL NOT NULL, PRIMARY KEY (time, series_id)) WITHOUT ROWID"
        )
        db.execute(
            "CREATE TABLE series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL, "
            "site_id TEXT NOT NULL, device_id TEXT NOT NULL, field TEXT NOT NULL, "
            "UNIQUE (measurement, site_id, device_id, field))"
        )
        db.execute("INSERT INTO series VALUES (1, ?, ?, ?, ?)", KEY)
        db.execute("INSERT INTO raw VALUES (?, 1, 1.5)", (T,))
    store = SqliteStore(str(path))
    assert values(store) == {T: 1.5}
    store.write_points([(*KEY, T, 2.5)], seqs=[1])  # any stream message replaces old rows
    assert values(store) == {T: 2.5}
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value, seq FROM raw").fetchall() == [(2.5, 1)]
