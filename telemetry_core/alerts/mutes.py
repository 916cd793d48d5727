"""Silences, maintenance windows and inhibition: muting notifications, never alerts.

Where it is decided: when a notification (an event and its outbox entries) is created,
inside the transaction that records the transition (``lifecycle``). A muted notification
is recorded ``suppressed`` with its reason (``silence <id>``, ``maintenance <name>``,
``inhibited by <alert_id>``), so what was hidden and why stays visible in
``telemetry alerts``. Deciding there costs the fast path nothing: transitions are rare, and
a batch that changes no alert state never reaches this module.

The firing alerts whose ``alert.firing`` was muted are kept in ``alert_mutes``. When the
mute ends and the alert still fires (a silence ran out or was expired early, a maintenance
window closed, the inhibiting alert resolved), ``lifecycle.release_ended`` creates its
``alert.firing`` once; ``alert_sensor`` notices (``has_released``) and starts ``alert_job``,
which releases and delivers. A resolve whose firing nobody heard is suppressed with the
reason of the mute that hid the firing (Alertmanager's users ask for exactly this pair).

Silences live in the alerts database (``silences``) so the CLI, the API, every daemon and
every Dagster run see the same ones: the CLI writes, the others read when they decide.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telemetry_core.alerts.channels import AlertSettings
from telemetry_core.alerts.db import AlertsDB, Connection
from telemetry_core.alerts.matchers import Labels, matches
from telemetry_core.errors import ConfigError
from telemetry_core.timeutil import format_rfc3339

SILENCE_STATES = ("active", "pending", "expired")
LABEL_COLUMNS = "rule, kind, severity, measurement, site_id, device_id, field"


def labels_of(row: Sequence[Any]) -> dict[str, str]:
    """Labels from a row of ``LABEL_COLUMNS``."""
    rule, kind, severity, measurement, site_id, device_id, fld = row[:7]
    return {
        "rule": rule, "kind": kind, "severity": severity, "measurement": measurement,
        "site_id": site_id, "device_id": device_id, "field": fld,
    }  # fmt: skip


# -- silences ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    silence_id: str
    matchers: dict[str, str]
    starts_at: int
    ends_at: int
    comment: str
    created_by: str

    def state(self, now_ns: int) -> str:
        if now_ns < self.starts_at:
            return "pending"
        return "active" if now_ns < self.ends_at else "expired"

    def as_json(self, now_ns: int) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id,
            "matchers": self.matchers,
            "starts_at": format_rfc3339(self.starts_at),
            "ends_at": format_rfc3339(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "state": self.state(now_ns),
        }


_SILENCE_COLUMNS = "silence_id, matchers, starts_at, ends_at, comment, created_by"


def _silence(row: Sequence[Any]) -> Silence:
    return Silence(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5])


def add_silence(
    db: AlertsDB,
    matchers: dict[str, str],
    *,
    starts_at: int,
    ends_at: int,
    comment: str,
    created_by: str,
    now_ns: int | None = None,
) -> Silence:
    if not matchers:
        raise ConfigError("a silence needs at least one matcher (--match KEY=VALUE)")
    if not comment.strip():
        raise ConfigError("a silence needs a comment (--comment TEXT): say why")
    now = time.time_ns() if now_ns is None else now_ns
    if ends_at <= now:
        raise ConfigError(f"the silence would end in the past ({format_rfc3339(ends_at)})")
    if ends_at <= starts_at:
        raise ConfigError(
            f"the silence would end ({format_rfc3339(ends_at)}) before it starts "
            f"({format_rfc3339(starts_at)})"
        )
    silence = Silence(
        f"sil_{uuid.uuid4().hex[:16]}", dict(matchers), starts_at, ends_at, comment, created_by
    )
    with db.write() as conn:
        _changed(conn, now)
        conn.execute(
            f"INSERT INTO silences ({_SILENCE_COLUMNS}, created_at) VALUES (?,?,?,?,?,?,?)",
            (silence.silence_id, json.dumps(silence.matchers, sort_keys=True), starts_at,
             ends_at, comment, created_by, now),
        )  # fmt: skip
    return silence


def list_silences(
    db: AlertsDB, states: Sequence[str] = ("active", "pending"), now_ns: int | None = None
) -> list[dict[str, Any]]:
    """Silences in ``states`` (JSON objects), the latest start first."""
    now = time.time_ns() if now_ns is None else now_ns
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT {_SILENCE_COLUMNS} FROM silences ORDER BY starts_at DESC, silence_id"
        ).fetchall()
    silences = [_silence(r) for r in rows]
    return [s.as_json(now) for s in silences if s.state(now) in states]


def expire_silence(db: AlertsDB, silence_id: str, now_ns: int | None = None) -> Silence | None:
    """End the silence now (a pending one never starts); None when no such silence.
    An expired silence stays expired (its end is kept)."""
    now = time.time_ns() if now_ns is None else now_ns
    with db.write() as conn:
        row = conn.execute(
            f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE silence_id = ?", (silence_id,)
        ).fetchone()
        if row is None:
            return None
        silence = _silence(row)
        if silence.state(now) != "expired":
            starts = min(silence.starts_at, now)
            _changed(conn, now)
            conn.execute(
                "UPDATE silences SET starts_at = ?, ends_at = ? WHERE silence_id = ?",
                (starts, now, silence_id),
            )
            silence = Silence(*(silence.silence_id, silence.matchers, starts, now),
                              silence.comment, silence.created_by)  # fmt: skip
    return silence


# -- the decision -------------------------------------------------------------------------
# Silences change rarely (a person types a command) and are read on every transition, so
# each process keeps them parsed, keyed on ``alert_meta['silences']``: a stamp every
# add/expire moves (a nanosecond time, so two databases in one process never share one).
# One tiny indexed read per decision tells whether the copy is current.
_Cached = tuple[int, int, tuple[tuple[str, int, int, dict[str, str]], ...]]
_cache: _Cached | None = None  # (stamp, loaded for times >= this, silences)


def _changed(conn: Connection, now_ns: int) -> None:
    row = conn.execute("SELECT v FROM alert_meta WHERE k = 'silences'").fetchone()
    stamp = max((row[0] if row else 0) + 1, now_ns, time.time_ns())
    conn.execute(
        "INSERT INTO alert_meta (k, v) VALUES ('silences', ?) ON CONFLICT (k) DO UPDATE SET v = ?",
        (stamp, stamp),
    )


def _silences(conn: Connection, now_ns: int) -> tuple[tuple[str, int, int, dict[str, str]], ...]:
    """Silences that have not ended by ``now_ns``, from the process's copy when current."""
    global _cache
    row = conn.execute("SELECT v FROM alert_meta WHERE k = 'silences'").fetchone()
    if row is None:
        return ()
    cached = _cache
    if cached is None or cached[0] != row[0] or now_ns < cached[1]:
        rows = conn.execute(
            "SELECT silence_id, starts_at, ends_at, matchers FROM silences WHERE ends_at > ? "
            "ORDER BY starts_at, silence_id",
            (now_ns,),
        ).fetchall()
        cached = _cache = (
            row[0],
            now_ns,
            tuple((r[0], r[1], r[2], json.loads(r[3])) for r in rows),
        )
    return cached[2]


def mute_reason(
    conn: Connection,
    settings: AlertSettings,
    labels: Labels,
    now_ns: int,
    alert_id: str | None = None,
    firing: list[Any] | None = None,
) -> str | None:
    """Why a notification of the alert with ``labels`` is muted at ``now_ns``, or None.

    Silences first, then maintenance windows, then inhibition (``alert_id``, the alert
    itself, never inhibits itself; ``firing``: the firing alerts' ids and labels, when the
    caller decides for many alerts in one transaction)."""
    for silence_id, starts_at, ends_at, matchers in _silences(conn, now_ns):
        if starts_at <= now_ns < ends_at and matches(matchers, labels):
            return f"silence {silence_id}"
    for window in settings.maintenance:
        if window.mutes(labels, now_ns):
            return f"maintenance {window.name}"
    rules = [r for r in settings.inhibit if matches(r.target, labels)]
    if rules:
        sources = firing_alerts(conn) if firing is None else firing
        for rule in rules:
            for row in sources:
                if row[0] != alert_id and rule.inhibits(labels_of(row[1:]), labels):
                    return f"inhibited by {row[0]}"
    return None


def firing_alerts(conn: Connection) -> list[Any]:
    return conn.execute(
        f"SELECT alert_id, {LABEL_COLUMNS} FROM alerts WHERE state = 'firing' "
        "ORDER BY started_at, alert_id"
    ).fetchall()


def muted_firing(conn: Connection) -> list[Any]:
    return conn.execute(
        f"SELECT a.alert_id, a.{LABEL_COLUMNS.replace(', ', ', a.')} FROM alert_mutes m "
        "JOIN alerts a ON a.alert_id = m.alert_id WHERE a.state = 'firing' "
        "ORDER BY m.muted_at, a.alert_id"
    ).fetchall()


def has_released(db: AlertsDB, settings: AlertSettings, now_ns: int | None = None) -> bool:
    """Is some firing alert's muted ``alert.firing`` due now because its mute ended?"""
    if not settings.channels():
        return False
    now = time.time_ns() if now_ns is None else now_ns
    with db.read() as conn:
        muted = muted_firing(conn)
        firing = firing_alerts(conn) if muted and settings.inhibit else []
        for row in muted:
            if mute_reason(conn, settings, labels_of(row[1:]), now, row[0], firing) is None:
                return True
    return False
