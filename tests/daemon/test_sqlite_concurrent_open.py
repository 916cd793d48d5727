"""Opening the SQLite store from several processes at the same instant never fails.

Daemons, Dagster runs and the CLI open the same file; two daemons started together on a
fresh file once died with ``database is locked`` from ``PRAGMA journal_mode=WAL`` (SQLite
answers "busy" there without waiting). Opening must wait, not crash.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

OPENER = r"""
import sys, time
start_at = float(sys.argv[2])
from telemetry_core.store import open_store
time.sleep(max(0.0, start_at - time.time() - 0.01))
while time.time() < start_at:  # the last instant spinning: every process starts together
    pass
store = open_store(sys.argv[1])
if sys.argv[3] != "reader":
    store.write_points([("energy", "site-a", "m-" + sys.argv[3], "power_w", 1795000000 * 10**9, 1.0)])
store.read_points(0, 2**62)
store.close()
"""

ROUNDS = 12
PROCESSES = 6  # four writers (daemons, Dagster runs) and two readers (the CLI) per round


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path):
    for round_ in range(ROUNDS):
        db = tmp_path / f"round-{round_}.db"
        start_at = time.time() + 1.5  # after every interpreter has started
        roles = [str(i) for i in range(PROCESSES - 2)] + ["reader", "reader"]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, f"sqlite:///{db}", str(start_at), role],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for role in roles
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"round {round_}: an opener failed:\n{err[-2000:]}"
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT count(*) FROM raw").fetchone()[0] == PROCESSES - 2


def test_daemons_started_together_on_a_fresh_file_all_run(nats_server, daemons, tmp_path):
    """Three rounds of three daemon processes launched at once on a new file each."""
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'daemons-{round_}.db'}"
        started = [daemons(store_url=url).launch() for _ in range(3)]
        for d in started:
            d.wait_healthy()
        for d in started:
            assert d.health()["store"]["up"], d.log()
            assert d.stop() == 0, d.log()
