"""Where the alerts database lives, sharing the store's file, locks, concurrent deliverers."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from telemetry_core.alerts.db import AlertsDB, AlertsUnavailable, alerts_db_url, open_alerts_db
from telemetry_core.alerts.delivery import deliver_due
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.alerts.secrets import resolve_secrets
from telemetry_core.store import StoreUnavailable
from telemetry_core.store.base import StoreError
from telemetry_core.store.sqlite import SqliteStore
from tests.alerts.conftest import T0, S, events, make_config
from tests.alerts.receiver import Receiver
from tests.conftest import free_port

RULE = {"measurement": "energy", "field": "power_w", "above": 100}


PG = "postgresql://alerts:s3cret@db.internal:5432/telemetry"


@pytest.mark.parametrize(
    ("store_url", "env", "expected"),
    [
        ("sqlite:///.state/telemetry.db", {}, "sqlite:///.state/telemetry.db"),
        ("sqlite:////var/lib/t.db", {}, "sqlite:////var/lib/t.db"),
        (None, {"TELEMETRY_STORE_URL": "sqlite:////data/t.db"}, "sqlite:////data/t.db"),
        (None, {}, "sqlite:///.state/telemetry.db"),  # the default store is SQLite
        ("influxdb://influx:8086/telemetry", {}, "sqlite:///.state/alerts.db"),
        ("influxdb2://h:8086/b?org=o", {"TELEMETRY_ALERTS_DB": "/srv/alerts.db"},
         "sqlite:////srv/alerts.db"),
        ("influxdb://h:8086/db", {"TELEMETRY_ALERTS_DB": "sqlite:////srv/a.db"},
         "sqlite:////srv/a.db"),
        ("sqlite:///t.db", {"TELEMETRY_ALERTS_DB": "alerts.db"}, "sqlite:///alerts.db"),
        # a PostgreSQL store: its own database holds the alerts too
        (PG, {}, PG),
        ("postgres://db/telemetry", {}, "postgres://db/telemetry"),
        (None, {"TELEMETRY_STORE_URL": PG}, PG),
        # TELEMETRY_ALERTS_DB wins, whatever the store
        ("sqlite:///t.db", {"TELEMETRY_ALERTS_DB": PG}, PG),
        ("influxdb://h:8086/db", {"TELEMETRY_ALERTS_DB": "postgres://pg/alerts"},
         "postgres://pg/alerts"),
        (PG, {"TELEMETRY_ALERTS_DB": "/srv/a.db"}, "sqlite:////srv/a.db"),
    ],
)  # fmt: skip
def test_alerts_db_url(store_url, env, expected):
    assert alerts_db_url(store_url, env) == expected


@pytest.mark.parametrize(
    ("store_url", "env", "setting"),
    [
        ("sqlite:///t.db", {"TELEMETRY_ALERTS_DB": "influxdb://u:s3cret@h:8086/db"},
         "TELEMETRY_ALERTS_DB"),
        ("mysql://u:s3cret@h/db", {}, "TELEMETRY_STORE_URL"),
    ],
)  # fmt: skip
def test_an_unsupported_location_names_the_setting_and_hides_the_password(store_url, env, setting):
    with pytest.raises(StoreError) as info:
        alerts_db_url(store_url, env)
    assert setting in str(info.value) and "s3cret" not in str(info.value)
    assert "u:***@" in str(info.value)


def test_passwords_are_never_shown(postgres_url, caplog):
    """The repr, the daemon's start line and an outage's message hide the password."""
    from ingest_daemon.alerting import threshold_hook

    parts = urlsplit(postgres_url)
    user = parts.username or "postgres"
    netloc = f"{user}:s3cret@{parts.hostname}:{parts.port or 5432}"
    with_password = urlunsplit(parts._replace(netloc=netloc))
    try:
        db = AlertsDB(with_password)
    except AlertsUnavailable:  # the server checks passwords: what we show is still tested
        db = None
    if db is not None:
        assert "s3cret" not in repr(db) and f"{user}:***@" in repr(db)
        db.close()
        with caplog.at_level(logging.INFO, logger="ingest_daemon.alerting"):
            hook = threshold_hook(
                make_config([RULE]), "sqlite:///t.db", {"TELEMETRY_ALERTS_DB": with_password}
            )
        assert hook is not None
        hook.close()
        assert "alerts in" in caplog.text and "s3cret" not in caplog.text
    down = f"postgresql://u:s3cret@127.0.0.1:{free_port()}/telemetry"
    with pytest.raises(AlertsUnavailable) as info:
        AlertsDB(down, connect_timeout_s=2)
    assert isinstance(info.value, StoreUnavailable)
    assert "s3cret" not in str(info.value) and "u:***@127.0.0.1" in str(info.value)


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


def test_concurrent_deliverers_send_each_event_once(alerts_url):
    """Three alert_job runs at once (own connections): claims keep every send single."""
    path = alerts_url
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


def test_postgres_writers_wait_for_the_lock_then_report_an_outage(postgres_url):
    """Another process inside a write transaction holds the advisory lock: a writer waits
    ``busy_timeout_s`` for it (as SQLite's busy timeout), then gives up as an outage."""
    open_alerts_db(postgres_url).close()
    engine = ThresholdEngine(make_config([RULE]), AlertsDB(postgres_url, busy_timeout_s=0.2))
    engine.apply([("energy", "s", "d", "power_w", T0, 5.0)], None, T0)  # warm
    holder = AlertsDB(postgres_url)
    breach = [("energy", "s", "d", "power_w", T0 + S, 500.0)]
    with holder.write():
        with pytest.raises(AlertsUnavailable) as info:
            engine.apply(breach, None, T0)
        assert "lock" in str(info.value)
    assert engine.apply(breach, None, T0).fired == 1  # the redelivered batch
    holder.close()


def _terminate(postgres_url: str, application_name: str = "telemetry-alerts") -> int:
    """Kill the alerts connections to the test database, as a server restart does."""
    import psycopg

    name = urlsplit(postgres_url).path.lstrip("/")
    with psycopg.connect(postgres_url, autocommit=True, application_name="killer") as conn:
        return len(
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
                (name, application_name),
            ).fetchall()
        )


def test_postgres_connection_lost_is_an_outage_and_the_next_use_reconnects(postgres_url):
    db = open_alerts_db(postgres_url)
    engine = ThresholdEngine(make_config([RULE]), db)
    engine.apply([("energy", "s", "d", "power_w", T0, 5.0)], None, T0)
    # lost while idle (the server restarted between batches): replaced, nothing fails
    assert _terminate(postgres_url) == 1
    assert engine.apply([("energy", "s", "d", "power_w", T0 + S, 500.0)], None, T0).fired == 1
    # lost inside a transaction: an outage (the daemon retries, does not ack) ...
    with pytest.raises(AlertsUnavailable) as info, db.write() as conn:
        conn.execute("SELECT 1")
        _terminate(postgres_url)
        conn.execute("SELECT 1")
    assert isinstance(info.value, StoreUnavailable)
    # ... and the retry reconnects; the rolled-back transaction left no trace
    assert engine.apply([("energy", "s", "d", "power_w", T0 + 2 * S, 5.0)], None, T0).resolved == 1
    assert [k for k, _ in events(db)] == ["alert.firing", "alert.resolved"]
    db.close()


def test_postgres_schema_is_created_once_when_processes_start_together(postgres_url):
    errors: list[BaseException] = []
    opened: list[AlertsDB] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(AlertsDB(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(opened) == 6
    assert all(db.has_tables() for db in opened)
    for db in opened:
        db.close()


def test_both_backends_create_the_same_tables(alerts_db):
    assert alerts_db.has_tables()
    with alerts_db.write() as conn:  # the dialect-neutral SQL the callers rely on
        conn.execute(
            "INSERT INTO alert_attempts (outbox_id, attempt, at, outcome, status, error, "
            "duration_ms) VALUES (?,?,?,?,?,?,?) ON CONFLICT (outbox_id, attempt) DO UPDATE "
            "SET outcome = excluded.outcome",
            (1, 1, T0, "failed", 503, "50% of '?' lost", 1.5),
        )
        conn.execute(
            "INSERT INTO alert_attempts (outbox_id, attempt, at, outcome, status, error, "
            "duration_ms) VALUES (?,?,?,?,?,?,?) ON CONFLICT (outbox_id, attempt) DO UPDATE "
            "SET outcome = excluded.outcome",
            (1, 1, T0, "delivered", 200, None, 2.5),
        )
        assert (
            conn.execute("UPDATE alert_attempts SET at = ? WHERE at = ?", (T0 + 1, T0)).rowcount
            == 1
        )
    with alerts_db.read() as conn:
        rows = conn.execute(
            "SELECT outbox_id, attempt, at, outcome, status, error FROM alert_attempts "
            "WHERE error LIKE '50%'"
        ).fetchall()
    assert [tuple(r) for r in rows] == [(1, 1, T0 + 1, "delivered", 503, "50% of '?' lost")]


def _transitions(url: str, device_offset: int, start: threading.Barrier, errors: list) -> None:
    """One daemon's engine writing a flapping series of shared and own devices."""
    cfg = make_config([RULE], cooldown_seconds=0, files=[{"name": "log", "path": "/dev/null"}])
    db = open_alerts_db(url)
    engine = ThresholdEngine(cfg, db)
    start.wait()
    try:
        for t in range(42):  # 10 breaches, each resolved
            value = 500.0 if (t // 2) % 2 else 5.0
            batch = [("energy", "site-a", f"m-{d}", "power_w", T0 + t * S, value)
                     for d in (0, 1, 2 + device_offset)]  # fmt: skip
            engine.apply(batch, None, T0 + t * S)
    except BaseException as exc:
        errors.append(exc)
    finally:
        db.close()


def test_concurrent_writers_keep_epoch_events_and_outbox_consistent(alerts_url):
    """Four engines (own connections, as four daemons) write transitions at once: every
    transition is one event with one outbox entry, none twice, and the epoch counts the
    state-changing commits so every cache stays exact."""
    errors: list[BaseException] = []
    start = threading.Barrier(4)
    threads = [
        threading.Thread(target=_transitions, args=(alerts_url, i, start, errors)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    db = open_alerts_db(alerts_url)
    evs = events(db)
    per_device: dict[str, list[str]] = {}
    for kind, data in evs:
        per_device.setdefault(data["device_id"], []).append(kind)
    # m-0 and m-1 are shared by all four, m-2..m-5 each by one: 10 flaps, fire + resolve
    assert sorted(per_device) == [f"m-{d}" for d in range(6)]
    for kinds in per_device.values():
        assert kinds == ["alert.firing", "alert.resolved"] * 10
    with db.read() as conn:
        outbox_rows = conn.execute("SELECT event_id, channel FROM alert_outbox").fetchall()
        event_ids = {r[0] for r in conn.execute("SELECT event_id FROM alert_events").fetchall()}
        (epoch,) = conn.execute("SELECT v FROM alert_meta WHERE k = 'epoch'").fetchone()
        (max_state_epoch,) = conn.execute("SELECT max(epoch) FROM alert_state").fetchone()
    assert len(outbox_rows) == len(set(outbox_rows)) == len(evs) == len(event_ids) == 120
    assert {r[0] for r in outbox_rows} == event_ids
    assert epoch == max_state_epoch
    db.close()


def test_a_daemon_started_while_postgres_is_down_sees_an_outage_not_a_crash(postgres_url):
    """The daemon opens the alerts database lazily: a server still starting is an outage of
    the first batches (retried, not acknowledged), and the tables come with the first use."""
    from ingest_daemon.alerting import threshold_hook

    down = f"postgresql://u:s3cret@127.0.0.1:{free_port()}/telemetry"
    hook = threshold_hook(make_config([RULE]), "sqlite:///t.db", {"TELEMETRY_ALERTS_DB": down})
    assert hook is not None
    with pytest.raises(AlertsUnavailable) as info:
        hook([("energy", "s", "d", "power_w", T0, 500.0)], [1])
    assert "s3cret" not in str(info.value)
    hook.close()
    lazy = AlertsDB(postgres_url, lazy=True)  # the server is up: first use creates the tables
    engine = ThresholdEngine(make_config([RULE]), lazy)
    assert engine.apply([("energy", "s", "d", "power_w", T0, 500.0)], None, T0).fired == 1
    assert lazy.has_tables() and len(events(lazy)) == 1
    lazy.close()
