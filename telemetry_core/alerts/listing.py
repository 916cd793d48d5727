"""Alerts with their delivery history, as ``telemetry alerts --format json`` and the API show.

Each alert has the keys of the webhook's ``data`` plus ``deliveries``: one entry per
attempt (``delivered`` or ``failed``, with the HTTP status or the error); a delivery not
attempted yet or waiting for its retry ends with one ``pending`` entry (its attempt number
and when it is due); a suppressed notification is one ``suppressed`` entry with attempt 0
and its ``reason``: ``cooldown``, ``silence <silence_id>``, ``maintenance <name>`` or
``inhibited by <alert_id>``. A muted firing delivered when its mute ended shows both: the
suppressed entry and the attempts of the later event.
"""

from __future__ import annotations

from typing import Any

from telemetry_core.alerts.db import AlertsDB
from telemetry_core.alerts.lifecycle import ALERT_COLUMNS, alert_data
from telemetry_core.timeutil import format_rfc3339

STATES = ("firing", "resolved", "all")
_EVENT_ORDER = {"firing": 0, "resolved": 1}


def _filter(state: str, since_ns: int | None) -> tuple[str, list[Any]]:
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    clauses: list[str] = []
    params: list[Any] = []
    if state != "all":
        clauses.append("state = ?")
        params.append(state)
    if since_ns is not None:
        clauses.append("(started_at >= ? OR resolved_at >= ?)")
        params += [since_ns, since_ns]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_alerts(
    db: AlertsDB, state: str = "all", since_ns: int | None = None
) -> list[dict[str, Any]]:
    """Alerts newest first; ``since_ns`` keeps those that fired or resolved at or after it."""
    where, params = _filter(state, since_ns)
    with db.read() as conn:
        alerts = conn.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts{where} ORDER BY started_at DESC, alert_id",
            params,
        ).fetchall()
        outbox = conn.execute(
            "SELECT o.id, o.alert_id, o.event, o.channel, o.status, o.attempts, "
            "o.next_attempt_at, o.created_at, r.reason FROM alert_outbox o "
            "LEFT JOIN alert_event_reasons r ON r.event_id = o.event_id "
            f"WHERE o.alert_id IN (SELECT alert_id FROM alerts{where})",
            params,
        ).fetchall()
        attempts = conn.execute(
            "SELECT a.outbox_id, a.attempt, a.at, a.outcome, a.status, a.error "
            "FROM alert_attempts a JOIN alert_outbox o ON o.id = a.outbox_id "
            f"WHERE o.alert_id IN (SELECT alert_id FROM alerts{where}) "
            "ORDER BY a.outbox_id, a.attempt",
            params,
        ).fetchall()
    tried: dict[int, list[tuple]] = {}
    for row in attempts:
        tried.setdefault(row[0], []).append(row)
    deliveries: dict[str, list[dict[str, Any]]] = {}
    outbox.sort(key=lambda r: (r[1], _EVENT_ORDER.get(r[2], 2), r[3], r[0]))
    for oid, alert_id, event, channel, status, n, next_at, created, reason in outbox:
        out = deliveries.setdefault(alert_id, [])
        if status == "suppressed":
            entry = _entry(channel, event, 0, created, "suppressed")
            entry["reason"] = reason or "cooldown"  # older rows: cooldown was the only one
            out.append(entry)
            continue
        for _, attempt, at, outcome, http_status, error in tried.get(oid, []):
            out.append(_entry(channel, event, attempt, at, outcome, http_status, error))
        if status == "pending":
            out.append(_entry(channel, event, n + 1, next_at, "pending"))
    return [{**alert_data(row), "deliveries": deliveries.get(row[0], [])} for row in alerts]


def _entry(
    channel: str,
    event: str,
    attempt: int,
    at: int | None,
    outcome: str,
    status: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "webhook": channel,
        "event": event,
        "attempt": attempt,
        "at": None if at is None else format_rfc3339(at),
        "outcome": outcome,
        "status": status,
        "error": error,
    }
