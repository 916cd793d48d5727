"""Helpers for the alert tests: a fresh alerts database and readable event lists."""

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


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "alerts.db")


@pytest.fixture
def alerts_db(db_path: str):
    db = open_alerts_db(db_path)
    yield db
    db.close()


def events(db: AlertsDB) -> list[tuple[str, dict]]:
    """(type, data) of every event, in creation order."""
    with db.read() as conn:
        rows = conn.execute("SELECT body FROM alert_events ORDER BY created_at, rowid").fetchall()
    return [(b["type"], b["data"]) for b in (json.loads(r[0]) for r in rows)]


def outbox(db: AlertsDB) -> list[tuple]:
    with db.read() as conn:
        return conn.execute(
            "SELECT event, channel, status, attempts FROM alert_outbox ORDER BY id"
        ).fetchall()
