"""The alerts database's tables, once per dialect.

The two lists describe the same tables, columns and indexes; only the types differ:
SQLite keeps its ``INTEGER`` (64-bit) and ``WITHOUT ROWID`` clustering; PostgreSQL needs
``BIGINT`` for nanosecond times (``INTEGER`` is 32-bit there), ``DOUBLE PRECISION`` for
``REAL`` (32-bit there) and an identity column for ``alert_outbox.id`` (SQLite's
``INTEGER PRIMARY KEY`` is its rowid). Flags stay integers (0/1) in both, so callers bind
``int(flag)`` either way. ``tests/alerts/test_db.py`` checks that both create ``TABLES``.
"""

from __future__ import annotations

TABLES = frozenset(
    ["alert_meta", "alert_state", "alerts", "alert_events", "alert_outbox", "alert_attempts",
     "anomalies", "silences", "alert_mutes", "alert_event_reasons"]
)  # fmt: skip

# Silences, muted firings and suppression reasons are tables of their own (not columns of
# the older ones): a database created before them gains them through CREATE IF NOT EXISTS.

SQLITE = [
    # A counter bumped by every commit that changes alert_state: a process whose cache
    # carries the same epoch knows its cache is exact without reading any state row.
    """CREATE TABLE IF NOT EXISTS alert_meta (
        k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS alert_state (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL,
        status TEXT NOT NULL,          -- ok | pending | firing
        breach_start INTEGER,          -- reading time the pending/firing breach began
        last_time INTEGER,             -- reading (or window) time of the last transition
        alert_id TEXT,                 -- the firing alert
        last_notified_at INTEGER,      -- creation time of the last non-suppressed event
        epoch INTEGER NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS alert_state_epoch ON alert_state (epoch)",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, measurement TEXT NOT NULL,
        site_id TEXT NOT NULL, device_id TEXT NOT NULL, field TEXT NOT NULL, value REAL,
        started_at INTEGER NOT NULL, resolved_at INTEGER,
        suppressed INTEGER NOT NULL, created_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at)",
    """CREATE TABLE IF NOT EXISTS alert_events (
        event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, event TEXT NOT NULL,
        created_at INTEGER NOT NULL, body TEXT NOT NULL, suppressed INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id)",
    """CREATE TABLE IF NOT EXISTS alert_outbox (
        id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, alert_id TEXT NOT NULL,
        event TEXT NOT NULL, channel TEXT NOT NULL,
        status TEXT NOT NULL,          -- pending | delivered | failed | suppressed
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
        claimed_until INTEGER, created_at INTEGER NOT NULL,
        UNIQUE (event_id, channel))""",
    "CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id, channel)",
    """CREATE TABLE IF NOT EXISTS alert_attempts (
        outbox_id INTEGER NOT NULL, attempt INTEGER NOT NULL, at INTEGER NOT NULL,
        outcome TEXT NOT NULL, status INTEGER, error TEXT, duration_ms REAL NOT NULL,
        PRIMARY KEY (outbox_id, attempt)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS anomalies (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL, window_start INTEGER NOT NULL,
        kind TEXT NOT NULL, severity TEXT NOT NULL, value REAL, score REAL,
        detail TEXT NOT NULL, first_seen_at INTEGER NOT NULL, evaluated_at INTEGER NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field, window_start)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS anomalies_window ON anomalies (window_start)",
    """CREATE TABLE IF NOT EXISTS silences (
        silence_id TEXT PRIMARY KEY, matchers TEXT NOT NULL,   -- JSON {label: pattern}
        starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL, comment TEXT NOT NULL,
        created_by TEXT NOT NULL, created_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS silences_ends ON silences (ends_at)",
    # firing alerts whose alert.firing was muted and not delivered yet (mutes.py)
    """CREATE TABLE IF NOT EXISTS alert_mutes (
        alert_id TEXT PRIMARY KEY, reason TEXT NOT NULL, muted_at INTEGER NOT NULL)""",
    # why an event was suppressed; an older suppressed event without a row: cooldown
    """CREATE TABLE IF NOT EXISTS alert_event_reasons (
        event_id TEXT PRIMARY KEY, reason TEXT NOT NULL)""",
]

POSTGRESQL = [
    """CREATE TABLE IF NOT EXISTS alert_meta (
        k TEXT PRIMARY KEY, v BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alert_state (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL,
        status TEXT NOT NULL, breach_start BIGINT, last_time BIGINT, alert_id TEXT,
        last_notified_at BIGINT, epoch BIGINT NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field))""",
    "CREATE INDEX IF NOT EXISTS alert_state_epoch ON alert_state (epoch)",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, measurement TEXT NOT NULL,
        site_id TEXT NOT NULL, device_id TEXT NOT NULL, field TEXT NOT NULL,
        value DOUBLE PRECISION, started_at BIGINT NOT NULL, resolved_at BIGINT,
        suppressed INTEGER NOT NULL, created_at BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at)",
    """CREATE TABLE IF NOT EXISTS alert_events (
        event_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, event TEXT NOT NULL,
        created_at BIGINT NOT NULL, body TEXT NOT NULL, suppressed INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id)",
    """CREATE TABLE IF NOT EXISTS alert_outbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL,
        alert_id TEXT NOT NULL, event TEXT NOT NULL, channel TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at BIGINT,
        claimed_until BIGINT, created_at BIGINT NOT NULL,
        UNIQUE (event_id, channel))""",
    "CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS alert_outbox_alert ON alert_outbox (alert_id, channel)",
    """CREATE TABLE IF NOT EXISTS alert_attempts (
        outbox_id BIGINT NOT NULL, attempt INTEGER NOT NULL, at BIGINT NOT NULL,
        outcome TEXT NOT NULL, status INTEGER, error TEXT,
        duration_ms DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (outbox_id, attempt))""",
    """CREATE TABLE IF NOT EXISTS anomalies (
        rule TEXT NOT NULL, measurement TEXT NOT NULL, site_id TEXT NOT NULL,
        device_id TEXT NOT NULL, field TEXT NOT NULL, window_start BIGINT NOT NULL,
        kind TEXT NOT NULL, severity TEXT NOT NULL, value DOUBLE PRECISION,
        score DOUBLE PRECISION, detail TEXT NOT NULL, first_seen_at BIGINT NOT NULL,
        evaluated_at BIGINT NOT NULL,
        PRIMARY KEY (rule, measurement, site_id, device_id, field, window_start))""",
    "CREATE INDEX IF NOT EXISTS anomalies_window ON anomalies (window_start)",
    """CREATE TABLE IF NOT EXISTS silences (
        silence_id TEXT PRIMARY KEY, matchers TEXT NOT NULL,   -- JSON {label: pattern}
        starts_at BIGINT NOT NULL, ends_at BIGINT NOT NULL, comment TEXT NOT NULL,
        created_by TEXT NOT NULL, created_at BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS silences_ends ON silences (ends_at)",
    # firing alerts whose alert.firing was muted and not delivered yet (mutes.py)
    """CREATE TABLE IF NOT EXISTS alert_mutes (
        alert_id TEXT PRIMARY KEY, reason TEXT NOT NULL, muted_at BIGINT NOT NULL)""",
    # why an event was suppressed; an older suppressed event without a row: cooldown
    """CREATE TABLE IF NOT EXISTS alert_event_reasons (
        event_id TEXT PRIMARY KEY, reason TEXT NOT NULL)""",
]
