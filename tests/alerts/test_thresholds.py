"""The threshold fast path: rule table, replay idempotency, cooldown, several engines."""

from __future__ import annotations

import multiprocessing

import pytest

from telemetry_core.alerts.db import open_alerts_db
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.timeutil import format_rfc3339
from tests.alerts.conftest import T0, S, events, make_config, outbox

POWER = {"measurement": "energy", "field": "power_w"}


def at(seconds: float) -> str:
    return format_rfc3339(T0 + round(seconds * S))


def reading(seconds: float, value: float, site="site-a", device="meter-1", field="power_w"):
    return ("energy", site, device, field, T0 + round(seconds * S), value)


# (rule, readings as (seconds, value) or full points, expected events as
#  (type, value, started_at seconds, resolved_at seconds or None))
CASES = {
    "above": (
        {**POWER, "above": 5000},
        [(0, 100), (10, 6000), (20, 7000), (30, 5000), (40, 6500)],
        [("alert.firing", 6000, 10, None), ("alert.resolved", 6000, 10, 30),
         ("alert.firing", 6500, 40, None)],
    ),
    "equal to the bound is in bounds": (
        {**POWER, "above": 5000}, [(0, 5000), (10, 5000.0)], [],
    ),
    "below": (
        {**POWER, "below": 10},
        [(0, 20), (10, 5), (20, 2), (30, 10)],
        [("alert.firing", 5, 10, None), ("alert.resolved", 5, 10, 30)],
    ),
    "outside a band": (
        {**POWER, "above": 30, "below": 10},
        [(0, 20), (10, 35), (20, 5), (30, 20)],
        [("alert.firing", 35, 10, None), ("alert.resolved", 35, 10, 30)],
    ),
    "for_seconds: fires once the breach has held": (
        {**POWER, "above": 100, "for_seconds": 60},
        [(0, 200), (30, 200), (59, 200), (60, 150), (70, 300), (80, 50)],
        [("alert.firing", 150, 0, None), ("alert.resolved", 150, 0, 80)],
    ),
    "for_seconds: an in-bounds reading clears a pending breach": (
        {**POWER, "above": 100, "for_seconds": 60},
        [(0, 200), (30, 50), (40, 200), (90, 200), (100, 200)],
        [("alert.firing", 200, 40, None)],
    ),
    "for_seconds: never held long enough": (
        {**POWER, "above": 100, "for_seconds": 60}, [(0, 200), (59, 200), (60, 10)], [],
    ),
    "scope: site": (
        {**POWER, "above": 100, "site_id": "site-a"},
        [reading(0, 500, site="site-b"), reading(10, 500, site="site-a")],
        [("alert.firing", 500, 10, None)],
    ),
    "scope: device": (
        {**POWER, "above": 100, "device_id": "meter-2"},
        [reading(0, 500), reading(10, 600, device="meter-2")],
        [("alert.firing", 600, 10, None)],
    ),
    "other fields are ignored": (
        {**POWER, "above": 100}, [reading(0, 500, field="energy_kwh")], [],
    ),
}  # fmt: skip


def _points(readings):
    return [r if isinstance(r, tuple) and len(r) == 6 else reading(*r) for r in readings]


def _summary(evs):
    out = []
    for kind, data in evs:
        resolved = data["resolved_at"]
        out.append((kind, data["value"], data["started_at"], resolved))
    return out


def _expected(expected):
    return [(k, float(v), at(s), None if r is None else at(r)) for k, v, s, r in expected]


@pytest.mark.parametrize("batching", ["one batch", "one reading per batch", "shuffled batch"])
@pytest.mark.parametrize("case", list(CASES))
def test_threshold_rules(alerts_db, case, batching):
    rule, readings, expected = CASES[case]
    engine = ThresholdEngine(make_config([rule], cooldown_seconds=0), alerts_db)
    points = _points(readings)
    if batching == "one batch":
        engine.apply(points, None, T0)
    elif batching == "shuffled batch":  # stream order differs from reading time order
        engine.apply(points[::-1], None, T0)
    else:
        for p in points:
            engine.apply([p], None, T0)
    assert _summary(events(alerts_db)) == _expected(expected)


def test_event_body_has_every_contract_key(alerts_db):
    cfg = make_config(
        [{**POWER, "above": 5000, "severity": "critical", "name": "power-high"}],
        webhooks=[{"name": "ops", "url": "http://127.0.0.1:9/h", "secret_env": "X"}],
    )
    ThresholdEngine(cfg, alerts_db).apply([reading(0, 6000)], [7], T0 + 5 * S)
    [(kind, data)] = events(alerts_db)
    assert kind == "alert.firing"
    assert data == {
        "alert_id": data["alert_id"],
        "rule": "power-high",
        "kind": "threshold",
        "severity": "critical",
        "state": "firing",
        "measurement": "energy",
        "site_id": "site-a",
        "device_id": "meter-1",
        "field": "power_w",
        "value": 6000.0,
        "started_at": at(0),
        "resolved_at": None,
    }
    assert outbox(alerts_db) == [("firing", "ops", "pending", 0)]


def test_replay_produces_no_duplicates(alerts_url):
    """A batch redelivered (same engine, a restarted one, or partly overlapping) adds nothing."""
    cfg = make_config([{**POWER, "above": 100, "for_seconds": 10}], cooldown_seconds=0)
    stream = [reading(t, v) for t, v in [(0, 500), (5, 500), (10, 500), (20, 5), (30, 500)]]
    db = open_alerts_db(alerts_url)
    engine = ThresholdEngine(cfg, db)
    engine.apply(stream[:3], None, T0)
    engine.apply(stream[:3], None, T0)  # redelivered before the ack
    engine.apply(stream[1:4], None, T0)  # overlaps
    first = events(db)
    assert [k for k, _ in first] == ["alert.firing", "alert.resolved"]
    restarted = ThresholdEngine(cfg, open_alerts_db(alerts_url))  # a new process: empty cache
    restarted.apply(stream, None, T0)  # the whole stream again
    restarted.apply(stream[3:], None, T0)
    assert [k for k, _ in events(db)] == ["alert.firing", "alert.resolved"]
    assert events(db)[:2] == first
    # a new pending breach starts only after the replay: t=30, fires at t=40
    restarted.apply([reading(40, 500)], None, T0)
    assert [k for k, _ in events(db)][-1] == "alert.firing"


def test_no_database_round_trip_when_nothing_matches(alerts_db):
    engine = ThresholdEngine(make_config([{**POWER, "above": 100}]), alerts_db)
    alerts_db.close()  # any database access would now raise
    result = engine.apply([("hvac", "s", "d", "temp", T0, 99.0)] * 1000, None, T0)
    assert result.matched == 0


def test_no_write_when_no_state_changes(alerts_db):
    engine = ThresholdEngine(make_config([{**POWER, "above": 100}]), alerts_db)
    engine.apply([reading(0, 500)], None, T0)
    with alerts_db.read() as conn:
        changes = conn.execute("SELECT v FROM alert_meta WHERE k = 'epoch'").fetchone()[0]
    result = engine.apply([reading(t, 600) for t in range(1, 100)], None, T0)
    assert (result.matched, result.transitions) == (99, 0)
    with alerts_db.read() as conn:
        assert conn.execute("SELECT v FROM alert_meta WHERE k = 'epoch'").fetchone()[0] == changes


def test_cooldown_suppresses_a_refire_and_its_resolution(alerts_db):
    cfg = make_config(
        [{**POWER, "above": 100}],
        cooldown_seconds=900,
        files=[{"name": "log", "path": "/dev/null"}],
    )
    engine = ThresholdEngine(cfg, alerts_db)
    engine.apply([reading(0, 500)], None, T0)  # notified
    engine.apply([reading(10, 5)], None, T0 + 60 * S)  # resolved: notified
    engine.apply([reading(20, 500)], None, T0 + 120 * S)  # within 900 s of the resolution
    engine.apply([reading(30, 5)], None, T0 + 180 * S)  # its resolution: suppressed too
    engine.apply([reading(40, 500)], None, T0 + 961 * S)  # 901 s after the last notification
    assert [status for _, _, status, _ in outbox(alerts_db)] == [
        "pending", "pending", "suppressed", "suppressed", "pending",
    ]  # fmt: skip
    assert [k for k, _ in events(alerts_db)] == ["alert.firing", "alert.resolved"] * 2 + [
        "alert.firing"
    ]


def test_two_engines_on_one_database_agree(alerts_url):
    """Two daemons (two connections) on one series: the DB state wins over either cache."""
    cfg = make_config([{**POWER, "above": 100}], cooldown_seconds=0)
    a = ThresholdEngine(cfg, open_alerts_db(alerts_url))
    b = ThresholdEngine(cfg, open_alerts_db(alerts_url))
    a.apply([reading(0, 5)], None, T0)
    b.apply([reading(1, 5)], None, T0)  # both caches now say "ok"
    a.apply([reading(10, 500)], None, T0)  # A fires
    b.apply([reading(11, 600)], None, T0)  # B must know it is firing: nothing new
    b.apply([reading(20, 5)], None, T0)  # B resolves A's alert
    a.apply([reading(30, 700)], None, T0)  # A must know it was resolved: fires again
    a.apply([reading(30, 700)], None, T0)
    b.apply([reading(30, 700)], None, T0)  # the same batch at the other daemon
    summary = [(k, d["value"]) for k, d in events(open_alerts_db(alerts_url))]
    assert summary == [
        ("alert.firing", 500.0), ("alert.resolved", 500.0), ("alert.firing", 700.0),
    ]  # fmt: skip


STREAM = [
    [reading(t, 500 if (t // 3) % 2 else 5, device=f"meter-{d}") for d in range(5)]
    for t in range(60)
]
RULES = [{**POWER, "above": 100}, {**POWER, "above": 50, "name": "p50", "for_seconds": 2}]


def _apply_stream(alerts_url: str, start) -> None:
    engine = ThresholdEngine(make_config(RULES, cooldown_seconds=0), open_alerts_db(alerts_url))
    start.wait()
    for batch in STREAM:
        engine.apply(batch, None, T0)


def test_two_processes_replaying_one_stream_record_each_event_once(alerts_url, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_apply_stream, args=(alerts_url, start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    reference = str(tmp_path / "reference.db")
    single = ThresholdEngine(make_config(RULES, cooldown_seconds=0), open_alerts_db(reference))
    for batch in STREAM:
        single.apply(batch, None, T0)

    def key(evs):
        return sorted(
            (d["rule"], d["device_id"], k, d["started_at"], d["resolved_at"]) for k, d in evs
        )

    expected = key(events(open_alerts_db(reference)))
    assert len(expected) == 2 * 5 * 20 - 5 * 2  # 10 breaches x 5 devices x 2 rules, fire+resolve
    assert key(events(open_alerts_db(alerts_url))) == expected
