"""docs/postgresql.md's Grafana set-up, run as written: the read-only role's grants and the
documented 15-minute query (Grafana's ``$__unixEpochNanoFilter`` macro expanded as Grafana
expands it), as that role, against a real PostgreSQL store. The series must equal what the
store's own reader (``telemetry query``'s) returns, and the role must be able to write
nothing and read no alert."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import polars as pl
import pytest

from telemetry_core.alerts.db import AlertsDB
from telemetry_core.store import open_store
from telemetry_core.store.base import ALL
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

pytestmark = pytest.mark.services

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgresql.md"
T0 = 1_795_000_000_000_000_000 - 1_795_000_000_000_000_000 % HOUR_NS


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def _site_rows(sites: dict[str, list[float]]) -> pl.DataFrame:
    rows = []
    for site, sums in sites.items():
        for i, total in enumerate(sums):
            ws = T0 + i * WINDOW_15M_NS
            rows.append((ws, "energy", site, ALL, "energy_kwh", 3, total, 0.0, total, 0.0,
                         total, ws, ws + 1, True))  # fmt: skip
    columns = ["window_start", "measurement", "site_id", "device_id", "field", "count",
               "sum", "min", "max", "first", "last", "first_time", "last_time",
               "is_work_hours"]  # fmt: skip
    return pl.DataFrame(rows, schema=columns, orient="row")


def test_documented_grafana_role_and_query(postgres_url):
    import psycopg

    grants = next(b for b in _sql_blocks() if "CREATE ROLE" in b)
    query = next(b for b in _sql_blocks() if "$__unixEpochNanoFilter" in b)
    database = postgres_url.rsplit("/", 1)[1]
    role = f"grafana_reader_{uuid.uuid4().hex[:8]}"  # roles are per server: one per test
    store = open_store(postgres_url)
    store.replace_rollups(
        "site_15m",
        T0,
        T0 + 4 * WINDOW_15M_NS,
        _site_rows({"site-a": [1.5, 2.25, 0.0, 4.0], "site-b": [10.0, 0.5, 7.0, 3.0]}),
    )
    AlertsDB(postgres_url).close()  # the alert tables exist in the same database
    admin = psycopg.connect(postgres_url, autocommit=True)
    try:
        admin.execute(
            grants.replace("grafana_reader", role).replace(
                "DATABASE telemetry", f'DATABASE "{database}"'
            )
        )
        # Grafana's expansion of $__unixEpochNanoFilter(col) for the dashboard's range
        start, end = T0 + WINDOW_15M_NS, T0 + 3 * WINDOW_15M_NS - 1
        sql = re.sub(r"\$__unixEpochNanoFilter\((\w+)\)", rf"\1 >= {start} AND \1 <= {end}", query)
        with psycopg.connect(postgres_url, user=role) as reader:
            rows = reader.execute(sql).fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("SELECT count(*) FROM alerts")
            reader.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("DELETE FROM rollup_site_15m")
        expected = store.read_rollups("site_15m", start, end + 1, field="energy_kwh")
        want = sorted(
            (ws, site, total)
            for ws, site, total in expected.select("window_start", "site_id", "sum").rows()
        )
        got = sorted((int(t.timestamp() * 1e9), metric, value) for t, metric, value in rows)
        assert len(want) == 4 and got == want
    finally:
        store.close()
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')
        admin.close()
