"""The alerts database as the Dagster side opens it: next to the store the resource names.

Why a function and not a second resource: where the alerts database lives is decided by
the store URL and ``TELEMETRY_ALERTS_DB`` (``telemetry_core.alerts.alerts_db_url``), the
same way the ingest daemon decides it. Deriving it from the one ``TelemetryStore`` resource
keeps the daemon, the jobs and the sensors on the same database with no second setting to
get wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from telemetry_assets.resources import TelemetryStore
from telemetry_core.alerts import AlertsDB, alerts_db_url, open_alerts_db


@contextmanager
def open_alerts(store: TelemetryStore) -> Iterator[AlertsDB]:
    """Open (creating its tables if needed) the alerts database of ``store``'s store URL;
    raises ``AlertsUnavailable`` when it is locked or unreachable."""
    db = open_alerts_db(alerts_db_url(store.resolved_url()))
    try:
        yield db
    finally:
        db.close()
