"""Alert lifecycle shared by the threshold engine and the anomaly rules.

An alert is identified by (rule, measurement, site_id, device_id, field) and moves
``firing`` -> ``resolved``. Each transition is one event whose body is fixed when it is
created (the same bytes on every retry) and one outbox entry per channel whose
``min_severity`` the alert meets, decided at creation. Cooldown: a key that fires again
within ``cooldown_seconds`` of its last non-suppressed notification (of any event type) is
recorded with its notification ``suppressed``, and so is that alert's resolution. Silences,
maintenance windows and inhibition suppress the same way (``mutes``), each suppressed
notification with its reason.

Everything here runs inside the caller's write transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from telemetry_core.alerts.db import AlertsDB, Connection, bump_epoch
from telemetry_core.alerts.mutes import (
    LABEL_COLUMNS,
    firing_alerts,
    labels_of,
    mute_reason,
    muted_firing,
)
from telemetry_core.alerts.rules import AlertSettings
from telemetry_core.timeutil import NS, format_rfc3339


class AlertKey(NamedTuple):
    rule: str
    measurement: str
    site_id: str
    device_id: str
    field: str


@dataclass(frozen=True)
class KeyState:
    status: str = "ok"  # ok | pending | firing
    breach_start: int | None = None
    last_time: int | None = None
    alert_id: str | None = None
    last_notified_at: int | None = None


OK = KeyState()
COOLDOWN = "cooldown"
STATE_COLUMNS = "status, breach_start, last_time, alert_id, last_notified_at"
KEY_COLUMNS = "rule, measurement, site_id, device_id, field"


def load_states(conn: Connection, keys: list[AlertKey]) -> dict[AlertKey, KeyState]:
    out: dict[AlertKey, KeyState] = {}
    for key in keys:
        row = conn.execute(
            f"SELECT {STATE_COLUMNS} FROM alert_state WHERE rule = ? AND measurement = ? "
            "AND site_id = ? AND device_id = ? AND field = ?",
            key,
        ).fetchone()
        out[key] = KeyState(*row) if row else OK
    return out


def save_state(conn: Connection, key: AlertKey, state: KeyState, epoch: int) -> None:
    conn.execute(
        f"INSERT INTO alert_state ({KEY_COLUMNS}, {STATE_COLUMNS}, epoch) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (rule, measurement, site_id, device_id, field) "
        "DO UPDATE SET status = excluded.status, breach_start = excluded.breach_start, "
        "last_time = excluded.last_time, alert_id = excluded.alert_id, "
        "last_notified_at = excluded.last_notified_at, epoch = excluded.epoch",
        (*key, state.status, state.breach_start, state.last_time, state.alert_id,
         state.last_notified_at, epoch),
    )  # fmt: skip


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def fire(
    conn: Connection,
    settings: AlertSettings,
    key: AlertKey,
    state: KeyState,
    *,
    kind: str,
    severity: str,
    value: float | None,
    started_at: int,
    at_time: int,
    now_ns: int,
) -> KeyState:
    """Create a firing alert and its event; returns the key's new state. Its notification
    is suppressed within the key's cooldown, or while a silence, a maintenance window or
    an inhibiting alert mutes it (``mutes``: then it is delivered when the mute ends)."""
    last = state.last_notified_at
    alert_id = _new_id("alert")
    labels = {
        "rule": key.rule, "kind": kind, "severity": severity, "measurement": key.measurement,
        "site_id": key.site_id, "device_id": key.device_id, "field": key.field,
    }  # fmt: skip
    if last is not None and now_ns - last < settings.cooldown_seconds * NS:
        reason: str | None = COOLDOWN
    else:
        reason = mute_reason(conn, settings, labels, now_ns, alert_id)
    suppressed = reason is not None
    conn.execute(
        "INSERT INTO alerts (alert_id, rule, kind, severity, state, measurement, site_id, "
        "device_id, field, value, started_at, resolved_at, suppressed, created_at) "
        "VALUES (?,?,?,?, 'firing', ?,?,?,?,?,?, NULL, ?,?)",
        (alert_id, key.rule, kind, severity, *key[1:], value, started_at, int(suppressed),
         now_ns),
    )  # fmt: skip
    if reason is not None and reason != COOLDOWN:
        conn.execute(
            "INSERT INTO alert_mutes (alert_id, reason, muted_at) VALUES (?,?,?)",
            (alert_id, reason, now_ns),
        )
    event(conn, settings, alert_id, "firing", now_ns, reason)
    return KeyState("firing", started_at, at_time, alert_id, last if suppressed else now_ns)


def resolve(
    conn: Connection,
    settings: AlertSettings,
    state: KeyState,
    *,
    resolved_at: int,
    at_time: int,
    now_ns: int,
) -> KeyState:
    """Resolve the key's firing alert. A resolve whose firing nobody heard is suppressed
    with the reason that hid the firing; one whose firing was delivered is suppressed only
    if a mute holds now."""
    assert state.alert_id is not None, "only a firing key has an alert to resolve"
    conn.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE alert_id = ?",
        (resolved_at, state.alert_id),
    )
    row = conn.execute(
        f"SELECT suppressed, {LABEL_COLUMNS} FROM alerts WHERE alert_id = ?", (state.alert_id,)
    ).fetchone()
    reason: str | None
    if row[0]:
        muted = conn.execute(
            "SELECT reason FROM alert_mutes WHERE alert_id = ?", (state.alert_id,)
        ).fetchone()
        reason = muted[0] if muted else COOLDOWN
        conn.execute("DELETE FROM alert_mutes WHERE alert_id = ?", (state.alert_id,))
    else:
        reason = mute_reason(conn, settings, labels_of(row[1:]), now_ns, state.alert_id)
    event(conn, settings, state.alert_id, "resolved", now_ns, reason)
    notified = state.last_notified_at if reason is not None else now_ns
    return replace(OK, last_time=at_time, last_notified_at=notified)


def alert_data(row: Sequence[Any]) -> dict:
    """The webhook ``data`` object of an alert row (``ALERT_COLUMNS`` order)."""
    (alert_id, rule, kind, severity, state, measurement, site_id, device_id, fld, value,
     started_at, resolved_at) = row[:12]  # fmt: skip
    return {
        "alert_id": alert_id,
        "rule": rule,
        "kind": kind,
        "severity": severity,
        "state": state,
        "measurement": measurement,
        "site_id": site_id,
        "device_id": device_id or None,  # a site-level alert has no device
        "field": fld,
        "value": value,
        "started_at": format_rfc3339(started_at),
        "resolved_at": None if resolved_at is None else format_rfc3339(resolved_at),
    }


ALERT_COLUMNS = (
    "alert_id, rule, kind, severity, state, measurement, site_id, device_id, field, value, "
    "started_at, resolved_at"
)


def event(
    conn: Connection,
    settings: AlertSettings,
    alert_id: str,
    event: str,
    now_ns: int,
    reason: str | None,
) -> None:
    """One event of the alert (its body fixed now) and its outbox entries: pending, or
    suppressed when ``reason`` says why (kept in ``alert_event_reasons``)."""
    suppressed = reason is not None
    row = conn.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,)
    ).fetchone()
    data = alert_data(row)
    body = json.dumps(
        {"type": f"alert.{event}", "timestamp": format_rfc3339(now_ns), "data": data},
        separators=(",", ":"),
    )
    event_id = _new_id("msg")
    conn.execute(
        "INSERT INTO alert_events (event_id, alert_id, event, created_at, body, suppressed) "
        "VALUES (?,?,?,?,?,?)",
        (event_id, alert_id, event, now_ns, body, int(suppressed)),
    )
    if reason is not None:
        conn.execute(
            "INSERT INTO alert_event_reasons (event_id, reason) VALUES (?,?)", (event_id, reason)
        )
    status = "suppressed" if suppressed else "pending"
    conn.executemany(
        "INSERT INTO alert_outbox (event_id, alert_id, event, channel, status, attempts, "
        "next_attempt_at, created_at) VALUES (?,?,?,?,?,0,?,?)",
        [
            (event_id, alert_id, event, channel, status, None if suppressed else now_ns, now_ns)
            for channel in settings.channels_for(data["severity"])
        ],
    )


def release_ended(db: AlertsDB, settings: AlertSettings, now_ns: int | None = None) -> int:
    """Create the ``alert.firing`` of every still-firing alert whose mute has ended, once
    (its ``alert_mutes`` row goes in the same transaction); returns how many."""
    now = time.time_ns() if now_ns is None else now_ns
    with db.write() as conn:
        muted = muted_firing(conn)
        firing = firing_alerts(conn) if muted and settings.inhibit else []
        released = [
            row[0]
            for row in muted
            if mute_reason(conn, settings, labels_of(row[1:]), now, row[0], firing) is None
        ]
        if not released:
            return 0
        epoch = bump_epoch(conn)
        for alert_id in released:
            event(conn, settings, alert_id, "firing", now, None)
            conn.execute("UPDATE alerts SET suppressed = 0 WHERE alert_id = ?", (alert_id,))
            conn.execute("DELETE FROM alert_mutes WHERE alert_id = ?", (alert_id,))
            # the cooldown counts from this notification; the epoch tells every daemon's cache
            conn.execute(
                "UPDATE alert_state SET last_notified_at = ?, epoch = ? WHERE alert_id = ?",
                (now, epoch, alert_id),
            )
    return len(released)
