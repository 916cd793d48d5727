"""Helpers for the alert tests: a fresh alerts database (SQLite and PostgreSQL: every test
that takes ``alerts_url`` or ``alerts_db`` runs on both) and readable event lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telemetry_core.alerts.db import AlertsDB, open_alerts_db
from telemetry_core.config import Config, parse_config

S = 1_000_000_000
T0 = 1_790_000_000 * S  # 2026-09-21T...Z, a whole second


def make_config(thresholds=(), anomalies=(), **alerts) -> Config:
    return parse_config(
        {"thresholds": list(thresholds), "anomalies": list(anomalies), "alerts": alerts}
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def alerts_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh alerts database lives: a SQLite file, or a throwaway PostgreSQL
    database (skipped, or failed under TELEMETRY_REQUIRE_SERVICES=1, without a server)."""
    if request.param == "sqlite":
        return str(tmp_path / "alerts.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def alerts_db(alerts_url: str):
    db = open_alerts_db(alerts_url)
    yield db
    db.close()


def events(db: AlertsDB) -> list[tuple[str, dict]]:
    """(type, data) of every event, in creation order (events of one transaction share a
    creation time: then insertion order, SQLite's rowid or the row's place in PostgreSQL's
    heap, which an insert-only table fills in order)."""
    order = "rowid" if db.dialect == "sqlite" else "ctid"
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT body FROM alert_events ORDER BY created_at, {order}"
        ).fetchall()
    return [(b["type"], b["data"]) for b in (json.loads(r[0]) for r in rows)]


def outbox(db: AlertsDB) -> list[tuple]:
    with db.read() as conn:
        return conn.execute(
            "SELECT event, channel, status, attempts FROM alert_outbox ORDER BY id"
        ).fetchall()
