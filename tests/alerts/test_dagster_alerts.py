"""alert_sensor and alert_job with a real Dagster instance, a real alerts database fed by
the threshold engine, and a real HTTP receiver on loopback verified with standardwebhooks."""

from __future__ import annotations

import threading
import time
import warnings

import dagster as dg
import pytest
from standardwebhooks import Webhook as Verifier

from telemetry_assets.definitions import build_defs
from telemetry_assets.resources import TelemetryStore
from telemetry_assets.sensors.alerts import build_alert_sensor
from telemetry_core.alerts import ThresholdEngine, has_due, list_alerts, open_alerts_db
from telemetry_core.config import parse_config
from tests.alerts.dagster_helpers import (
    RULES,
    SECRET,
    S,
    run_request,
    set_env,
    step_metadata,
    webhook_toml,
)
from tests.alerts.receiver import Receiver
from tests.conftest import free_port

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@pytest.fixture
def receiver():
    r = Receiver(free_port()).start()
    yield r
    r.stop()


@pytest.fixture(params=["store file", "postgresql"])
def setup(tmp_path, monkeypatch, receiver, request):
    """SQLite store; the alerts in its file, or in PostgreSQL named by TELEMETRY_ALERTS_DB
    (the daemon and Dagster on different machines): the sensor and the job find them."""
    config = set_env(tmp_path, monkeypatch, RULES + webhook_toml(receiver.url))
    location = str(tmp_path / "telemetry.db")
    if request.param == "postgresql":
        location = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("TELEMETRY_ALERTS_DB", location)
    db = open_alerts_db(location)
    yield config, db, build_defs(config)
    db.close()


@pytest.fixture
def instance(tmp_path):
    """SQLite-backed (an in-memory instance is not shared between threads)."""
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def breach(config, db, device="m1", value=9000.0):
    now = time.time_ns()
    ThresholdEngine(config, db).apply(
        [("energy", "site-a", device, "power_w", now - 5 * S, value)], None, now
    )


def tick(sensor, instance, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"store": TelemetryStore()}
    )
    return sensor(context)


def requests(result) -> list[dg.RunRequest]:
    return list(getattr(result, "run_requests", None) or [])


def reason(result) -> str:
    skip = result if isinstance(result, dg.SkipReason) else result.skip_reason
    return skip.skip_message


def wait_for_request(sensor, instance, cursor, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = tick(sensor, instance, cursor)
        if requests(result):
            return result
        time.sleep(0.2)
    raise AssertionError(f"no run request within {timeout}s: {reason(result)}")


def test_an_event_waiting_is_one_run_and_it_delivers_signed(setup, instance, receiver):
    config, db, defs = setup
    sensor = build_alert_sensor(config)
    assert "nothing pending" in reason(tick(sensor, instance))
    breach(config, db)
    first = tick(sensor, instance)
    (request,) = requests(first)
    assert request.run_key == "deliver-1" and first.cursor == "1"
    assert request.tags["dagster/priority"] == "10"
    # Evaluated again with the same cursor: the same run key, deduplicated by Dagster.
    assert [r.run_key for r in requests(tick(sensor, instance))] == ["deliver-1"]

    result = run_request(defs, instance, "alert_job", request)
    assert result.success
    md = step_metadata(result, "deliver_alerts")
    assert {k: md[k] for k in ("attempted", "delivered", "retrying", "failed")} == {
        "attempted": 1, "delivered": 1, "retrying": 0, "failed": 0,
    }  # fmt: skip
    assert md["next_due"] == "nothing pending"
    [req] = receiver.requests
    payload = Verifier(SECRET).verify(req.body, req.headers)
    assert (payload["type"], payload["data"]["device_id"]) == ("alert.firing", "m1")
    assert "nothing pending" in reason(tick(sensor, instance, first.cursor))


def test_no_second_run_while_one_is_delivering(setup, instance, receiver):
    config, db, defs = setup
    sensor = build_alert_sensor(config)
    breach(config, db, "m1")
    breach(config, db, "m2")
    (request,) = requests(tick(sensor, instance))
    receiver.delay_s = 2.0  # the run is busy with its first send
    done: list[dg.ExecuteInProcessResult] = []
    worker = threading.Thread(
        target=lambda: done.append(run_request(defs, instance, "alert_job", request))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while not receiver.requests:  # the run has claimed and is sending the first entry
        assert time.monotonic() < deadline, "the run never sent"
        time.sleep(0.05)
    assert has_due(db), "the second entry is due while the run is busy"
    busy = tick(sensor, instance, "1")
    assert not requests(busy) and "is queued or running" in reason(busy)
    worker.join(60)
    assert done and done[0].success
    assert step_metadata(done[0], "deliver_alerts")["delivered"] == 2
    assert len(receiver.requests) == 2
    assert "nothing pending" in reason(tick(sensor, instance, "1"))


def test_a_failed_attempt_is_retried_by_a_later_run(setup, instance, receiver):
    config, db, defs = setup
    sensor = build_alert_sensor(config)
    receiver.script = [503]
    breach(config, db)
    first = tick(sensor, instance)
    md = step_metadata(
        run_request(defs, instance, "alert_job", requests(first)[0]), "deliver_alerts"
    )
    assert (md["attempted"], md["retrying"], md["delivered"]) == (1, 1, 0)
    assert md["next_due"] != "nothing pending"
    waiting = tick(sensor, instance, first.cursor)  # backoff 1 s: not due yet
    assert not requests(waiting) and "next at" in reason(waiting)
    retry = wait_for_request(sensor, instance, first.cursor)
    (request,) = requests(retry)
    assert request.run_key == "deliver-2"
    md = step_metadata(run_request(defs, instance, "alert_job", request), "deliver_alerts")
    assert (md["attempted"], md["delivered"]) == (1, 1)
    [alert] = list_alerts(db)
    assert [(d["attempt"], d["outcome"], d["status"]) for d in alert["deliveries"]] == [
        (1, "failed", 503),
        (2, "delivered", 200),
    ]
    first_id, second_id = (r.headers["webhook-id"] for r in receiver.requests)
    assert first_id == second_id  # the same event id on every retry


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "environment variable OPS_SECRET is not set"),
        ("not-a-secret", "environment variable OPS_SECRET must hold a secret of the form"),
    ],
)
def test_a_bad_secret_fails_the_run_naming_the_variable(
    setup, instance, receiver, monkeypatch, value, message
):
    config, db, defs = setup
    breach(config, db)
    if value is None:
        monkeypatch.delenv("OPS_SECRET")
    else:
        monkeypatch.setenv("OPS_SECRET", value)
    (request,) = requests(tick(build_alert_sensor(config), instance))
    result = run_request(defs, instance, "alert_job", request, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = failure.step_failure_data.error.message
    assert message in text and "not-a-secret" not in text
    assert receiver.requests == [] and has_due(db), "nothing sent, the entry still due"


def test_without_channels_the_sensor_does_not_open_the_database(tmp_path, monkeypatch, instance):
    set_env(tmp_path, monkeypatch, "")
    result = tick(build_alert_sensor(parse_config({})), instance)
    assert "no [alerts] webhooks or files configured" in reason(result)
    assert not (tmp_path / "telemetry.db").exists()
