"""anomaly_sensor and anomaly_job with a real Dagster instance: real rollup_15m
materialisations (from running the rollup job) become exactly the expected anomaly runs,
none twice, none missed; the runs record anomalies and alerts idempotently."""

from __future__ import annotations

import warnings

import dagster as dg
import pytest

from telemetry_assets.definitions import build_defs
from telemetry_assets.sensors.anomaly import (
    FIRST_TAG,
    LAST_TAG,
    SOURCE_RUN_TAG,
    build_anomaly_sensor,
)
from telemetry_core.alerts import list_alerts, open_alerts_db
from telemetry_core.config import parse_config
from telemetry_core.store import open_store
from telemetry_core.windows import DAY_NS, partition_key
from tests.alerts.dagster_helpers import (
    materialise,
    readings,
    recent_windows,
    run_request,
    set_env,
    step_metadata,
)

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@pytest.fixture
def env(tmp_path, monkeypatch, request):
    """Config, the SQLite store and the alerts database: the store's file, or (a test
    parametrised with ``indirect``) PostgreSQL through TELEMETRY_ALERTS_DB."""
    config = set_env(tmp_path, monkeypatch)
    store = open_store(f"sqlite:///{tmp_path / 'telemetry.db'}")
    location = str(tmp_path / "telemetry.db")
    if getattr(request, "param", "store file") == "postgresql":
        location = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("TELEMETRY_ALERTS_DB", location)
    db = open_alerts_db(location)
    yield config, store, db
    db.close()
    store.close()


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def tick(sensor, instance, cursor):
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def windows_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["evaluate_anomalies"]["config"]["windows"]


def test_each_materialisation_is_one_run_and_ranges_are_batched(env, instance):
    config, store, _ = env
    defs = build_defs(config)
    ws = recent_windows(8)
    store.write_points(readings(ws, "m1", [1.0, 2.0, 3.0]))
    single = materialise(defs, instance, ws[:1])  # a scheduled run: one partition
    ranged = materialise(defs, instance, ws)  # a backfill run: eight partitions
    sensor = build_anomaly_sensor(config, settle_seconds=0, max_windows=3)

    first = tick(sensor, instance, None)
    got = [(r.tags[SOURCE_RUN_TAG], windows_of(r)) for r in first.run_requests]
    keys = [partition_key(w) for w in ws]
    assert got == [(single, keys[:1]), (ranged, keys[:3]), (ranged, keys[3:6]), (ranged, keys[6:])]
    assert all(r.tags[FIRST_TAG] == windows_of(r)[0] for r in first.run_requests)
    assert all(r.tags[LAST_TAG] == windows_of(r)[-1] for r in first.run_requests)
    run_keys = [r.run_key for r in first.run_requests]
    assert len(set(run_keys)) == len(run_keys)

    # The same tick evaluated again (same cursor) asks for the same run keys: deduplicated.
    again = tick(sensor, instance, None)
    assert [r.run_key for r in again.run_requests] == run_keys
    # The next tick has nothing new.
    assert not tick(sensor, instance, first.cursor).run_requests

    # Late data re-materialises one window: exactly one run, for exactly that window.
    store.write_points(readings([ws[4]], "m1", [9.0]))
    late = materialise(defs, instance, [ws[4]])
    after = tick(sensor, instance, first.cursor)
    assert [(r.tags[SOURCE_RUN_TAG], windows_of(r)) for r in after.run_requests] == [
        (late, [keys[4]])
    ]
    assert after.run_requests[0].run_key not in run_keys
    assert not tick(sensor, instance, after.cursor).run_requests


def test_whole_backfill_run_fits_one_request_by_default(env, instance):
    config, store, _ = env
    defs = build_defs(config)
    ws = recent_windows(8)
    store.write_points(readings(ws, "m1", [1.0]))
    materialise(defs, instance, ws)
    result = tick(build_anomaly_sensor(config, settle_seconds=0), instance, None)
    assert [windows_of(r) for r in result.run_requests] == [[partition_key(w) for w in ws]]


def test_recent_events_wait_and_nothing_is_skipped(env, instance):
    config, store, _ = env
    defs = build_defs(config)
    ws = recent_windows(1)
    store.write_points(readings(ws, "m1", [1.0]))
    materialise(defs, instance, ws)
    waiting = tick(build_anomaly_sensor(config, settle_seconds=3600), instance, None)
    assert not waiting.run_requests and waiting.cursor is None  # the cursor did not pass it
    later = tick(build_anomaly_sensor(config, settle_seconds=0), instance, waiting.cursor)
    assert [windows_of(r) for r in later.run_requests] == [[partition_key(ws[0])]]


def test_without_anomaly_rules_the_cursor_moves_on_without_runs(env, instance):
    config, store, _ = env
    defs = build_defs(config)
    ws = recent_windows(2)
    store.write_points(readings(ws, "m1", [1.0]))
    materialise(defs, instance, ws)
    sensor = build_anomaly_sensor(parse_config({}), settle_seconds=0)
    result = tick(sensor, instance, None)
    assert not result.run_requests and result.cursor is not None
    assert "no [[anomalies]] rules" in result.skip_reason.skip_message


@pytest.mark.parametrize("env", ["store file", "postgresql"], indirect=True)
def test_anomaly_job_records_once_and_late_data_resolves(env, instance):
    config, store, db = env
    defs = build_defs(config)
    ws = recent_windows(4)
    store.write_points(readings(ws, "m1", [42.0, 42.0]))  # stuck
    store.write_points(readings(ws, "m2", [1.0, 2.0]))  # varies
    materialise(defs, instance, ws)
    sensor = build_anomaly_sensor(config, settle_seconds=0)
    first = tick(sensor, instance, None)
    (request,) = first.run_requests

    result = run_request(defs, instance, "anomaly_job", request)
    assert result.success
    md = step_metadata(result, "evaluate_anomalies")
    assert md["windows"] == 4 and md["windows_stale"] == 0 and md["rules_evaluated"] == 2
    # stuck: windows 2-4 of m1 (window 1 has no earlier window to compare); zscore: no
    # history at all, so every series of every window has no verdict.
    assert (md["anomalies"], md["anomalies.meter-stuck"]) == (3, 3)
    assert (md["no_verdict"], md["no_verdict.power-unusual"]) == (8 + 2, 8)
    assert (md["alerts_fired"], md["alerts_resolved"]) == (1, 0)
    assert "| meter-stuck | stuck |" in md["rules"]
    [alert] = list_alerts(db)
    assert (alert["rule"], alert["device_id"], alert["state"]) == ("meter-stuck", "m1", "firing")

    # The same windows again (a retried run): rows updated, nothing new fired.
    again = run_request(defs, instance, "anomaly_job", request)
    md2 = step_metadata(again, "evaluate_anomalies")
    assert (md2["anomalies_recorded"], md2["alerts_fired"]) == (3, 0)
    with db.read() as conn:
        assert conn.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 3
    assert len(list_alerts(db)) == 1

    # Late data un-sticks m1's last window: its re-materialisation is one run that
    # evaluates that window normal and resolves the alert.
    store.write_points(readings([ws[-1]], "m1", [7.0]))
    materialise(defs, instance, [ws[-1]])
    (late,) = tick(sensor, instance, first.cursor).run_requests
    md3 = step_metadata(run_request(defs, instance, "anomaly_job", late), "evaluate_anomalies")
    assert (md3["windows"], md3["anomalies_removed"], md3["alerts_resolved"]) == (1, 1, 1)
    [alert] = list_alerts(db)
    assert alert["state"] == "resolved"


def test_old_windows_are_recorded_without_notifying(env, instance):
    config, store, db = env
    defs = build_defs(config)
    ws = [w - 3 * DAY_NS for w in recent_windows(2)]
    store.write_points(readings(ws, "m1", [5.0]))
    materialise(defs, instance, ws)
    (request,) = tick(build_anomaly_sensor(config, settle_seconds=0), instance, None).run_requests
    md = step_metadata(run_request(defs, instance, "anomaly_job", request), "evaluate_anomalies")
    assert (md["windows_stale"], md["anomalies"], md["alerts_fired"]) == (2, 1, 0)
    assert list_alerts(db) == []


def test_a_bad_window_key_fails_the_run_naming_it(env, instance):
    config, _, _ = env
    defs = build_defs(config)
    request = dg.RunRequest(
        run_config={"ops": {"evaluate_anomalies": {"config": {"windows": ["2026-11-20 07:15"]}}}}
    )
    result = run_request(defs, instance, "anomaly_job", request, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "'2026-11-20 07:15' is not a 15-minute partition key" in str(
        failure.step_failure_data.error.message
    )
