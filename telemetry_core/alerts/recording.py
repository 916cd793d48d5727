"""Persisting an anomaly evaluation: anomaly rows and the anomaly alerts' lifecycle.

Idempotent by construction: one row per (rule, series, window), upserted; a re-run of the
window (late data, a retried run) updates the rows it still finds and deletes the ones it
no longer finds, never duplicates. Alerts: an anomalous window fires its key's alert
unless it is already firing; a window of the series evaluated normal resolves it. Verdicts
about a window older than the key's last transition are history and change nothing, and a
stale evaluation (the window ended over 2 h before it) records rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemetry_core.alerts import lifecycle
from telemetry_core.alerts.anomalies import Evaluation, Verdict
from telemetry_core.alerts.db import AlertsDB, bump_epoch
from telemetry_core.alerts.lifecycle import AlertKey
from telemetry_core.alerts.matchers import matches


@dataclass(frozen=True)
class RecordResult:
    recorded: int = 0  # anomaly rows written (new or updated)
    removed: int = 0  # rows a re-run no longer found
    fired: int = 0
    resolved: int = 0
    notified: bool = True  # False: stale window, alert state untouched

    def as_metadata(self) -> dict[str, int | bool]:
        return {
            "anomalies_recorded": self.recorded,
            "anomalies_removed": self.removed,
            "alerts_fired": self.fired,
            "alerts_resolved": self.resolved,
            "notified": self.notified,
        }


def record_anomalies(db: AlertsDB, evaluation: Evaluation) -> RecordResult:
    """Persist ``evaluation`` and the alert transitions it causes, in one transaction."""
    ws, now = evaluation.window_start, evaluation.evaluated_at
    found = [v for v in evaluation.verdicts if v.anomalous]
    keep = {(v.rule, *v.series) for v in found}
    rules = [r.rule for r in evaluation.rules]
    with db.write() as conn:
        removed = 0
        for rule in rules:
            existing = conn.execute(
                "SELECT rule, measurement, site_id, device_id, field FROM anomalies "
                "WHERE window_start = ? AND rule = ?",
                (ws, rule),
            ).fetchall()
            gone = [row for row in existing if tuple(row) not in keep]
            conn.executemany(
                "DELETE FROM anomalies WHERE rule = ? AND measurement = ? AND site_id = ? "
                "AND device_id = ? AND field = ? AND window_start = ?",
                [(*row, ws) for row in gone],
            )
            removed += len(gone)
        conn.executemany(
            "INSERT INTO anomalies (rule, measurement, site_id, device_id, field, window_start, "
            "kind, severity, value, score, detail, first_seen_at, evaluated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT "
            "(rule, measurement, site_id, device_id, field, window_start) DO UPDATE SET "
            "kind = excluded.kind, severity = excluded.severity, value = excluded.value, "
            "score = excluded.score, detail = excluded.detail, evaluated_at = excluded.evaluated_at",
            [
                (v.rule, *v.series, ws, v.kind, v.severity, v.value, _finite(v.score),
                 v.detail, now, now)
                for v in found
            ],
        )  # fmt: skip
        if evaluation.stale:
            return RecordResult(len(found), removed, notified=False)
        fired, resolved = _transitions(conn, evaluation, evaluation.verdicts)
    return RecordResult(len(found), removed, fired, resolved)


def _finite(score: float | None) -> float | None:
    """SQLite stores inf, but JSON has no inf: keep +-1e308 for a flat-baseline z."""
    if score is None or abs(score) < 1e308:
        return score
    return 1e308 if score > 0 else -1e308


def _inhibit_source(settings, v: Verdict) -> bool:
    measurement, site_id, device_id, fld = v.series
    labels = {
        "rule": v.rule, "kind": v.kind, "severity": v.severity, "measurement": measurement,
        "site_id": site_id, "device_id": device_id, "field": fld,
    }  # fmt: skip
    return any(matches(rule.source, labels) for rule in settings.inhibit)


def _transitions(conn, evaluation: Evaluation, verdicts: tuple[Verdict, ...]) -> tuple[int, int]:
    ws, now, settings = evaluation.window_start, evaluation.evaluated_at, evaluation.settings
    judged = [v for v in verdicts if v.anomalous is not None]
    if settings.inhibit:  # sources first: a dark site fires before its silent devices
        judged.sort(key=lambda v: not _inhibit_source(settings, v))
    keys = [AlertKey(v.rule, *v.series) for v in judged]
    states = lifecycle.load_states(conn, keys)
    changed = {}
    fired = resolved = 0
    for key, v in zip(keys, judged, strict=True):
        state = states[key]
        if state.last_time is not None and ws < state.last_time:
            continue  # an older window than the one that last changed this alert
        if v.anomalous and state.status != "firing":
            state = lifecycle.fire(
                conn, settings, key, state, kind=v.kind, severity=v.severity, value=v.value,
                started_at=ws, at_time=ws, now_ns=now,
            )  # fmt: skip
            fired += 1
        elif not v.anomalous and state.status == "firing":
            state = lifecycle.resolve(conn, settings, state, resolved_at=ws, at_time=ws, now_ns=now)
            resolved += 1
        else:
            continue
        changed[key] = state
    if changed:
        epoch = bump_epoch(conn)
        for key, state in changed.items():
            lifecycle.save_state(conn, key, state, epoch)
    return fired, resolved
