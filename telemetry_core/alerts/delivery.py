"""Outbox delivery: every due entry sent once per call, every attempt recorded.

Why an outbox (seed 002): the event is persisted before any send, so a receiver that is
down loses nothing; a failed attempt is rescheduled (``backoff_seconds * 2^(attempt-1)``,
capped at 300 s) and after ``max_attempts`` the entry is marked ``failed`` and stays
visible. Nothing sleeps waiting for a retry: ``alert_job`` runs again when ``has_due`` /
``next_due`` say so.

Delivery is at least once: an entry is claimed (a lease) before its send and recorded
after; a process that dies in between leaves the lease to expire and the entry is sent
again with the same ``webhook-id``, which receivers use to drop duplicates.

Webhooks follow Standard Webhooks: ``webhook-id`` (the event id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256(key, id.timestamp.body)>``, key = the secret after ``whsec_``,
base64-decoded), header names exactly as written. A 2xx answer is delivered; any other
answer (a redirect is not followed), a refused connection or ``http_timeout`` seconds
without an answer is retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from telemetry_core.alerts.db import AlertsDB
from telemetry_core.alerts.rules import AlertSettings, FileChannel, Webhook
from telemetry_core.alerts.secrets import Secrets

if TYPE_CHECKING:
    from telemetry_core.config import Config

NS = 1_000_000_000
USER_AGENT = "telemetry-alerts/1"

# Pending entries that may be sent now: an entry waits while an earlier event of the same
# alert is still pending on its channel, so a receiver never gets "resolved" before "firing".
_HEADS = """
    FROM alert_outbox o
    WHERE o.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM alert_outbox e WHERE e.alert_id = o.alert_id
                      AND e.channel = o.channel AND e.status = 'pending' AND e.id < o.id)"""


@dataclass(frozen=True)
class DeliveryCounts:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0  # failed attempts with a retry scheduled
    failed: int = 0  # entries given up after max_attempts (they stay visible)
    postponed: int = 0  # due entries not tried: their channel failed earlier in this call

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status: int | None
    error: str | None
    breaks_channel: bool  # the receiver itself is unwell: don't try its other entries now


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _post(hook: Webhook, key: bytes, event_id: str, body: bytes, at_ns: int, timeout: float):
    """One POST through http.client, which sends header names exactly as the contract
    writes them (urllib would send ``Webhook-id``) and never follows a redirect."""
    timestamp = at_ns // NS
    url = urlsplit(hook.url)
    conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, event_id, timestamp, body),
    }
    if url.username or url.password:
        credentials = f"{unquote(url.username or '')}:{unquote(url.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    conn = conn_type(url.hostname or "", url.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        detail = response.read(65536)[:200].decode("utf-8", "replace").strip()
        status = response.status
    except TimeoutError:
        return _Outcome(False, None, f"no answer within {timeout:g} s", True)
    except (OSError, http.client.HTTPException) as exc:
        return _Outcome(False, None, (str(exc) or type(exc).__name__)[:300], True)
    finally:
        conn.close()
    if 200 <= status < 300:
        return _Outcome(True, status, None, False)
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    return _Outcome(False, status, error, status >= 500 or status == 429)


def _append(channel: FileChannel, body: bytes) -> _Outcome:
    try:
        path = Path(channel.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as fh:
            fh.write(body + b"\n")
    except OSError as exc:
        return _Outcome(False, None, f"cannot append to {channel.path}: {exc.strerror}", True)
    return _Outcome(True, None, None, False)


def _send(settings, secrets, channel_name, event_id, body, at_ns, timeout) -> _Outcome:
    channel = settings.channels().get(channel_name)
    if channel is None:
        return _Outcome(False, None, f"channel {channel_name!r} is not configured", True)
    if isinstance(channel, FileChannel):
        return _append(channel, body)
    if channel.name not in secrets:
        return _Outcome(False, None, f"no secret resolved for webhook {channel.name!r}", True)
    return _post(channel, secrets.key(channel.name), event_id, body, at_ns, timeout)


def deliver_due(
    db: AlertsDB,
    config: Config,
    secrets: Secrets,
    now_ns: int | None = None,
    http_timeout: float = 10,
    *,
    max_seconds: float = 120,
) -> DeliveryCounts:
    """Send every outbox entry due at ``now_ns`` once and record each attempt.

    Attempt times follow the real clock from ``now_ns`` on. After a channel fails in this
    call (refused, timeout, 5xx, 429), its other due entries are postponed to that
    entry's retry time instead of each waiting out the same timeout. Claiming stops after
    ``max_seconds``; what is left stays due for the next call."""
    settings = config.alerts
    started = time.time_ns()
    now = started if now_ns is None else now_ns
    lease_ns = round((http_timeout + 30) * NS)
    broken: dict[str, int] = {}  # channel -> its retry time
    counts = dict.fromkeys(("attempted", "delivered", "retrying", "failed", "postponed"), 0)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        entry = _claim(db, now, now + (time.time_ns() - started) + lease_ns, broken)
        if entry is None:
            break
        outbox_id, event_id, channel, attempts, body = entry
        at = now + (time.time_ns() - started)
        t0 = time.perf_counter()
        outcome = _send(settings, secrets, channel, event_id, body.encode(), at, http_timeout)
        duration_ms = (time.perf_counter() - t0) * 1000
        attempt = attempts + 1
        result, next_at = _record(db, settings, outbox_id, attempt, at, outcome, duration_ms)
        counts["attempted"] += 1
        counts[result] += 1
        if outcome.breaks_channel and next_at is not None:
            broken[channel] = next_at
    for channel, until in broken.items():
        with db.write() as conn:
            counts["postponed"] += conn.execute(
                f"UPDATE alert_outbox SET next_attempt_at = ? WHERE id IN (SELECT o.id {_HEADS}"
                " AND o.channel = ? AND o.next_attempt_at <= ?)",
                (until, channel, now),
            ).rowcount
    return DeliveryCounts(**counts)


def _claim(db: AlertsDB, now: int, lease_until: int, broken: dict[str, int]):
    skip = ",".join("?" * len(broken))
    with db.write() as conn:
        row = conn.execute(
            f"SELECT o.id, o.event_id, o.channel, o.attempts {_HEADS} "
            "AND o.next_attempt_at <= ? AND (o.claimed_until IS NULL OR o.claimed_until < ?)"
            + (f" AND o.channel NOT IN ({skip})" if broken else "")
            + " ORDER BY o.next_attempt_at, o.id LIMIT 1",
            (now, now, *broken),
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "UPDATE alert_outbox SET claimed_until = ? WHERE id = ?", (lease_until, row[0])
        )
        (body,) = conn.execute(
            "SELECT body FROM alert_events WHERE event_id = ?", (row[1],)
        ).fetchone()
    return (*row, body)


def _record(
    db: AlertsDB,
    settings: AlertSettings,
    outbox_id: int,
    attempt: int,
    at: int,
    outcome: _Outcome,
    duration_ms: float,
) -> tuple[str, int | None]:
    if outcome.delivered:
        status, next_at, result = "delivered", None, "delivered"
    elif attempt >= settings.max_attempts:
        status, next_at, result = "failed", None, "failed"
    else:
        status, next_at, result = "pending", at + settings.backoff_ns(attempt), "retrying"
    with db.write() as conn:
        conn.execute(
            "INSERT INTO alert_attempts (outbox_id, attempt, at, outcome, status, error, "
            "duration_ms) VALUES (?,?,?,?,?,?,?) ON CONFLICT (outbox_id, attempt) DO UPDATE SET "
            "at = excluded.at, outcome = excluded.outcome, status = excluded.status, "
            "error = excluded.error, duration_ms = excluded.duration_ms",
            (outbox_id, attempt, at, "delivered" if outcome.delivered else "failed",
             outcome.status, outcome.error, duration_ms),
        )  # fmt: skip
        conn.execute(
            "UPDATE alert_outbox SET status = ?, attempts = ?, next_attempt_at = ?, "
            "claimed_until = NULL WHERE id = ?",
            (status, attempt, next_at, outbox_id),
        )
    return result, next_at


def has_due(db: AlertsDB, now_ns: int | None = None) -> bool:
    """Is any outbox entry due (pending, its time come, not claimed by a running delivery)?"""
    now = time.time_ns() if now_ns is None else now_ns
    with db.read() as conn:
        row = conn.execute(
            f"SELECT 1 {_HEADS} AND o.next_attempt_at <= ? "
            "AND (o.claimed_until IS NULL OR o.claimed_until < ?) LIMIT 1",
            (now, now),
        ).fetchone()
    return row is not None


def next_due(db: AlertsDB) -> int | None:
    """When the next outbox entry becomes due (ns), or None when nothing is pending."""
    # the later of the two, as a CASE: SQLite's scalar max(a, b) is PostgreSQL's greatest()
    with db.read() as conn:
        (when,) = conn.execute(
            "SELECT min(CASE WHEN o.claimed_until > o.next_attempt_at THEN o.claimed_until "
            f"ELSE o.next_attempt_at END) {_HEADS}"
        ).fetchone()
    return when
