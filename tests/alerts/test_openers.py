"""Every opener of the alerts database (daemon, Dagster jobs and sensors, API, CLI) finds the
same PostgreSQL database: the store's own, or the one ``TELEMETRY_ALERTS_DB`` names."""

from __future__ import annotations

import argparse
import time

import pytest

from ingest_daemon.alerting import threshold_hook
from telemetry_api.app import create_app
from telemetry_assets.jobs.alerts_db import open_alerts
from telemetry_assets.resources import TelemetryStore
from telemetry_cli.alerts import fetch
from telemetry_core.alerts import list_alerts
from tests.alerts.conftest import S, make_config

RULE = {"measurement": "energy", "field": "power_w", "above": 100, "name": "power-high"}


@pytest.mark.parametrize("where", ["postgresql store", "TELEMETRY_ALERTS_DB"])
def test_daemon_dagster_api_and_cli_share_the_postgres_database(
    where, postgres_url, tmp_path, monkeypatch
):
    if where == "postgresql store":
        store_url = postgres_url  # nothing is written to the store here: only its URL counts
        monkeypatch.delenv("TELEMETRY_ALERTS_DB", raising=False)
    else:
        store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
        monkeypatch.setenv("TELEMETRY_ALERTS_DB", postgres_url)
    monkeypatch.setenv("TELEMETRY_STORE_URL", store_url)

    hook = threshold_hook(make_config([RULE]), store_url)
    assert hook is not None and hook.db.dialect == "postgresql"
    now = time.time_ns()
    hook([("energy", "site-a", "m-1", "power_w", now - S, 500.0)], [1])
    hook.close()

    with open_alerts(TelemetryStore()) as db:  # the jobs' and sensors' way
        assert db.dialect == "postgresql"
        [fired] = list_alerts(db)
    assert (fired["rule"], fired["state"]) == ("power-high", "firing")

    deps = create_app(store_url).state.deps
    try:
        assert list_alerts(deps.alerts_db()) == [fired]
    finally:
        deps.close()

    args = argparse.Namespace(alerts_db=None, store_url=store_url, state="all")
    assert fetch(args, None) == [fired]
    assert not (tmp_path / "telemetry.db").exists(), "no SQLite file on the side"
