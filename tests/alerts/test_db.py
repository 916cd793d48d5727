"""Where the alerts database lives, sharing the store's file, locks, concurrent deliverers."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from telemetry_core.alerts.db import AlertsDB, AlertsUnavailable, alerts_db_path, open_alerts_db
from telemetry_core.alerts.delivery import deliver_due
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.alerts.secrets import resolve_secrets
from telemetry_core.store import StoreUnavailable
from telemetry_core.store.sqlite import SqliteStore
from tests.alerts.conftest import T0, S, events, make_config
from tests.alerts.receiver import Receiver
from tests.conftest import free_port

RULE = {"measurement": "energy", "field": "power_w", "above": 100}


@pytest.mark.parametrize(
    ("store_url", "env", "expected"),
    [
        ("sqlite:///.state/telemetry.db", {}, ".state/telemetry.db"),
        ("sqlite:////var/lib/t.db", {}, "/var/lib/t.db"),
        (None, {"TELEMETRY_STORE_URL": "sqlite:////data/t.db"}, "/data/t.db"),
        (None, {}, ".state/telemetry.db"),  # the default store is SQLite
        ("influxdb://influx:8086/telemetry", {}, ".state/alerts.db"),
        ("influxdb2://h:8086/b?org=o", {"TELEMETRY_ALERTS_DB": "/srv/alerts.db"}, "/srv/alerts.db"),
        ("influxdb://h:8086/db", {"TELEMETRY_ALERTS_DB": "sqlite:////srv/a.db"}, "/srv/a.db"),
        ("sqlite:///t.db", {"TELEMETRY_ALERTS_DB": "alerts.db"}, "alerts.db"),  # explicit wins
    ],
)
def test_alerts_db_path(store_url, env, expected):
    assert alerts_db_path(store_url, env) == expected


def test_store_and_alerts_share_one_file(tmp_path):
    path = str(tmp_path / "telemetry.db")
    db = open_alerts_db(path)
    store = SqliteStore(path)  # either may create the file first
    store.write_points([("energy", "site-a", "m-1", "power_w", T0, 500.0)])
    ThresholdEngine(make_config([RULE]), db).apply(
        [("energy", "site-a", "m-1", "power_w", T0, 500.0)], None, T0
    )
    assert store.count_points() == 1 and len(events(db)) == 1
    assert open_alerts_db(path).has_tables()


def test_a_locked_database_is_unavailable_and_the_engine_recovers(tmp_path):
    path = str(tmp_path / "alerts.db")
    open_alerts_db(path).close()
    engine = ThresholdEngine(make_config([RULE]), AlertsDB(path, busy_timeout_s=0.1))
    engine.apply([("energy", "s", "d", "power_w", T0, 5.0)], None, T0)  # warm
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    breach = [("energy", "s", "d", "power_w", T0 + S, 500.0)]
    with pytest.raises(AlertsUnavailable) as info:
        engine.apply(breach, None, T0)
    assert isinstance(info.value, StoreUnavailable)  # the daemon backs off and does not ack
    holder.execute("ROLLBACK")
    assert engine.apply(breach, None, T0).fired == 1  # the redelivered batch


def test_concurrent_deliverers_send_each_event_once(tmp_path):
    """Two alert_job runs at once (own connections): claims keep every send single."""
    path = str(tmp_path / "alerts.db")
    receiver = Receiver(free_port(), delay_s=0.02).start()
    cfg = make_config([RULE], webhooks=[{"name": "ops", "url": receiver.url, "secret_env": "OPS"}])
    secrets = resolve_secrets(cfg, {"OPS": "whsec_" + "QUJD" * 8})
    engine = ThresholdEngine(cfg, open_alerts_db(path))
    now = time.time_ns()
    engine.apply(
        [("energy", "site-a", f"m-{i}", "power_w", T0, 500.0) for i in range(30)], None, now
    )
    results = []

    def run() -> None:
        results.append(deliver_due(AlertsDB(path), cfg, secrets, now))

    try:
        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        receiver.stop()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert sum(r.delivered for r in results) == 30
