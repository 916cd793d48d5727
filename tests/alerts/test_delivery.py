"""Outbox delivery to a real HTTP receiver on loopback, verified with ``standardwebhooks``."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook as Verifier

from telemetry_core.alerts.delivery import deliver_due, has_due, next_due
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.alerts.listing import list_alerts
from telemetry_core.alerts.secrets import resolve_secrets
from tests.alerts.conftest import S, events, make_config
from tests.alerts.receiver import Receiver
from tests.conftest import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"OPS_SECRET": SECRET}
RULE = {"measurement": "energy", "field": "power_w", "above": 100, "severity": "critical"}


@pytest.fixture
def receiver():
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def setup(db, url, **alerts):
    hook = {"name": "ops", "url": url, "secret_env": "OPS_SECRET"}
    alerts.setdefault("webhooks", [hook])
    cfg = make_config([RULE, {**RULE, "name": "low", "above": 1000, "severity": "warning"}],
                      **alerts)  # fmt: skip
    return cfg, ThresholdEngine(cfg, db), resolve_secrets(cfg, ENV)


def breach(engine, t, value=500.0, device="meter-1"):
    now = time.time_ns()
    engine.apply([("energy", "site-a", device, "power_w", now - 60 * S + t, value)], None, now)


def deliveries(db):
    return [(d["event"], d["attempt"], d["outcome"], d["status"])
            for a in list_alerts(db) for d in a["deliveries"]]  # fmt: skip


def test_signed_standard_webhook_that_the_library_verifies(alerts_db, receiver):
    cfg, engine, secrets = setup(alerts_db, receiver.url)
    breach(engine, 0)
    counts = deliver_due(alerts_db, cfg, secrets)
    assert (counts.attempted, counts.delivered) == (1, 1)
    [req] = receiver.requests
    payload = Verifier(SECRET).verify(req.body, req.headers)  # raises if the signature is wrong
    assert payload["type"] == "alert.firing" and payload["data"]["rule"] == "energy.power_w.above"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["webhook-id"].startswith("msg_")
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    assert req.headers["webhook-signature"].startswith("v1,")
    assert payload == {"type": "alert.firing", "timestamp": payload["timestamp"],
                       "data": events(alerts_db)[0][1]}  # fmt: skip
    with pytest.raises(Exception, match="signature"):
        Verifier("whsec_" + "QUJD" * 8).verify(req.body, req.headers)


def test_503_twice_then_200_is_delivered_on_the_third_attempt(alerts_db, receiver):
    receiver.script = [503, 503]
    cfg, engine, secrets = setup(alerts_db, receiver.url, backoff_seconds=2)
    breach(engine, 0)
    now = time.time_ns()
    first = deliver_due(alerts_db, cfg, secrets, now)
    assert (first.attempted, first.retrying) == (1, 1)
    assert deliver_due(alerts_db, cfg, secrets, now + 1 * S).attempted == 0  # not due yet
    assert next_due(alerts_db) == pytest.approx(now + 2 * S, abs=S)
    assert deliver_due(alerts_db, cfg, secrets, now + 3 * S).retrying == 1  # then 4 s
    assert not has_due(alerts_db, now + 5 * S) and has_due(alerts_db, now + 8 * S)
    assert deliver_due(alerts_db, cfg, secrets, now + 8 * S).delivered == 1
    assert deliveries(alerts_db) == [
        ("firing", 1, "failed", 503), ("firing", 2, "failed", 503), ("firing", 3, "delivered", 200),
    ]  # fmt: skip
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    bodies = {r.body for r in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1 and len(bodies) == 1
    for req in receiver.requests:  # each attempt signed with its own timestamp
        Verifier(SECRET).verify(req.body, req.headers)
    assert not has_due(alerts_db, now + 3600 * S) and next_due(alerts_db) is None


def test_receiver_down_then_up_loses_nothing(alerts_db):
    port = free_port()
    receiver = Receiver(port)
    cfg, engine, secrets = setup(alerts_db, receiver.url, backoff_seconds=1)
    breach(engine, 0, device="m-1")
    breach(engine, 1, 5.0, device="m-1")  # resolved
    breach(engine, 2, device="m-2")
    breach(engine, 3, 5000.0, device="m-3")  # both rules: two alerts
    now = time.time_ns()
    down = deliver_due(alerts_db, cfg, secrets, now)
    # one refused attempt; the channel's other due entries wait for its retry, unattempted
    assert (down.attempted, down.retrying, down.postponed) == (1, 1, 3)
    later = deliver_due(alerts_db, cfg, secrets, now + 1 * S + 10**8)
    assert later.attempted == 1 and later.retrying == 1
    receiver.start()
    try:
        up = deliver_due(alerts_db, cfg, secrets, now + 10 * S)
    finally:
        receiver.stop()
    assert (up.delivered, up.retrying) == (5, 0)
    got = [json.loads(r.body) for r in receiver.requests]
    assert sorted((p["type"], p["data"]["device_id"], p["data"]["rule"]) for p in got) == [
        ("alert.firing", "m-1", "energy.power_w.above"),
        ("alert.firing", "m-2", "energy.power_w.above"),
        ("alert.firing", "m-3", "energy.power_w.above"),
        ("alert.firing", "m-3", "low"),
        ("alert.resolved", "m-1", "energy.power_w.above"),
    ]
    m1 = [p["type"] for p in got if p["data"]["device_id"] == "m-1"]
    assert m1 == ["alert.firing", "alert.resolved"]  # never resolved before fired
    errors = [d for a in list_alerts(alerts_db) for d in a["deliveries"] if d["error"]]
    assert errors and all("refused" in d["error"].lower() for d in errors)


def test_cooldown_suppresses_a_repeat_and_lets_the_next_distinct_alert_through(alerts_db, receiver):
    cfg, engine, secrets = setup(alerts_db, receiver.url, cooldown_seconds=900)
    breach(engine, 0)
    breach(engine, 1, 5.0)
    breach(engine, 2)  # the same key again within the cooldown: suppressed
    breach(engine, 3, 5.0)  # ... and so is its resolution
    breach(engine, 4, device="meter-2")  # a distinct alert: delivered
    counts = deliver_due(alerts_db, cfg, secrets)
    assert counts.delivered == 3
    got = [(p["type"], p["data"]["device_id"]) for p in map(json.loads, (r.body for r in receiver.requests))]  # fmt: skip
    assert sorted(got) == [("alert.firing", "meter-1"), ("alert.firing", "meter-2"),
                           ("alert.resolved", "meter-1")]  # fmt: skip
    suppressed = [a for a in list_alerts(alerts_db)
                  if a["deliveries"][0]["outcome"] == "suppressed"]  # fmt: skip
    [alert] = suppressed
    assert [(d["event"], d["attempt"], d["at"] is not None) for d in alert["deliveries"]] == [
        ("firing", 0, True), ("resolved", 0, True),
    ]  # fmt: skip


def test_max_attempts_then_failed_and_visible(alerts_db, receiver):
    receiver.default = 500
    cfg, engine, secrets = setup(alerts_db, receiver.url, max_attempts=2, backoff_seconds=1)
    breach(engine, 0)
    now = time.time_ns()
    deliver_due(alerts_db, cfg, secrets, now)
    last = deliver_due(alerts_db, cfg, secrets, now + 2 * S)
    assert (last.attempted, last.failed) == (1, 1)
    assert deliveries(alerts_db) == [("firing", 1, "failed", 500), ("firing", 2, "failed", 500)]
    assert not has_due(alerts_db, now + 3600 * S) and next_due(alerts_db) is None


def test_no_answer_within_the_timeout_is_retried(alerts_db, receiver):
    receiver.delay_s = 2.0
    cfg, engine, secrets = setup(alerts_db, receiver.url)
    breach(engine, 0)
    counts = deliver_due(alerts_db, cfg, secrets, http_timeout=0.3)
    assert counts.retrying == 1
    [alert] = list_alerts(alerts_db)
    failed, pending = alert["deliveries"]
    assert failed["outcome"] == "failed" and "no answer within 0.3 s" in failed["error"]
    assert (pending["outcome"], pending["attempt"]) == ("pending", 2)


@pytest.mark.parametrize("status", [301, 302, 400, 404])
def test_other_answers_are_not_delivered(alerts_db, receiver, status):
    receiver.script = [status]
    cfg, engine, secrets = setup(alerts_db, receiver.url)
    breach(engine, 0)
    assert deliver_due(alerts_db, cfg, secrets).retrying == 1
    assert deliveries(alerts_db)[0][2:] == ("failed", status)
    assert len(receiver.requests) == 1  # a redirect is not followed (a POST must stay a POST)


def test_min_severity_routing_and_the_file_channel(alerts_db, receiver, tmp_path):
    log = tmp_path / "alerts.jsonl"
    hooks = [{"name": "pager", "url": receiver.url, "secret_env": "OPS_SECRET",
              "min_severity": "critical"}]  # fmt: skip
    cfg, engine, secrets = setup(
        alerts_db, receiver.url, webhooks=hooks,
        files=[{"name": "log", "path": str(log), "min_severity": "info"}],
    )  # fmt: skip
    breach(engine, 0, 5000.0)  # critical ("above") and warning ("low")
    counts = deliver_due(alerts_db, cfg, secrets)
    assert counts.delivered == 3
    assert [json.loads(r.body)["data"]["severity"] for r in receiver.requests] == ["critical"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(p["data"]["rule"] for p in lines) == ["energy.power_w.above", "low"]
