"""Alerts: rules, the alerts database, the threshold fast path, anomaly rules, the outbox.

Imports neither Dagster nor NATS (the daemon and the Dagster jobs both call it) and loads
nothing heavy at import: ``telemetry_core.config`` imports ``alerts.rules``, so this
package resolves its public names lazily (polars only when anomalies are evaluated).

Public API (everything else is internal):

* config and secrets: ``resolve_secrets(config, environ) -> Secrets``
* database: ``alerts_db_url(store_url, environ) -> str`` (a ``sqlite:///`` or
  ``postgresql://`` URL), ``open_alerts_db(location) -> AlertsDB``
* daemon: ``ThresholdEngine(config, db).apply(points, seqs, now_ns) -> ApplyResult``
* anomaly_job: ``evaluate_window(store, config, window_start_ns, now_ns) -> Evaluation``,
  ``record_anomalies(db, evaluation) -> RecordResult``
* alert_job and its sensor: ``deliver_due(db, config, secrets, now_ns) -> DeliveryCounts``,
  ``has_due(db, now_ns)``, ``next_due(db)``
* CLI / API: ``list_alerts(db, state=, since_ns=) -> list[dict]``
* silences, maintenance, inhibition (``mutes``): ``add_silence``, ``list_silences``,
  ``expire_silence``; alert_sensor/alert_job: ``has_released(db, settings, now_ns)``,
  and ``lifecycle.release_ended(db, settings, now_ns)``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AlertSettings": "rules",
    "AnomalyRule": "rules",
    "Threshold": "rules",
    "Secrets": "secrets",
    "resolve_secrets": "secrets",
    "AlertsDB": "db",
    "alerts_db_url": "db",
    "open_alerts_db": "db",
    "ApplyResult": "engine",
    "ThresholdEngine": "engine",
    "Evaluation": "anomalies",
    "Verdict": "anomalies",
    "evaluate_window": "anomalies",
    "record_anomalies": "recording",
    "RecordResult": "recording",
    "DeliveryCounts": "delivery",
    "deliver_due": "delivery",
    "has_due": "delivery",
    "next_due": "delivery",
    "sign": "delivery",
    "list_alerts": "listing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
