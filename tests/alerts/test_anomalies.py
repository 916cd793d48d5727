"""Anomaly rules over stored 15-minute rollups, and their idempotent recording."""

from __future__ import annotations

import math

import polars as pl
import pytest

from telemetry_core.alerts.anomalies import evaluate_window, robust_z
from telemetry_core.alerts.recording import record_anomalies
from telemetry_core.store.base import ROLLUP_SCHEMA
from telemetry_core.store.sqlite import SqliteStore
from telemetry_core.windows import DAY_NS, WINDOW_15M_NS
from tests.alerts.conftest import S, events, make_config

W = WINDOW_15M_NS
WS = 1_790_000_100 * S - (1_790_000_100 * S) % W  # the evaluated window
NOW = WS + W + 120 * S  # evaluated 2 minutes after it ended


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "telemetry.db"))
    yield s
    s.close()


def row(ws, device, lo, hi=None, mean=None, count=60, field="power_w", site="site-a"):
    hi = lo if hi is None else hi
    mean = (lo + hi) / 2 if mean is None else mean
    return {
        "window_start": ws, "measurement": "energy", "site_id": site, "device_id": device,
        "field": field, "count": count, "sum": mean * count, "min": lo, "max": hi,
        "first": lo, "last": hi, "first_time": ws, "last_time": ws + W - S,
        "is_work_hours": False,
    }  # fmt: skip


def put(store, ws, rows):
    """Roll up window ``ws`` with ``rows`` (an empty list: rolled up, nobody reported)."""
    frame = pl.DataFrame(rows, schema={k: getattr(pl, v) for k, v in ROLLUP_SCHEMA.items()})
    store.replace_rollups("15m", ws, ws + W, frame)


def zrule(**kw):
    return {"name": "power-unusual", "kind": "zscore", "measurement": "energy",
            "field": "power_w", **kw}  # fmt: skip


def baseline(store, means, device="meter-1"):
    for day, mean in enumerate(means, start=1):
        put(store, WS - day * DAY_NS, [row(WS - day * DAY_NS, device, mean)])


def only(evaluation):
    [verdict] = evaluation.verdicts
    return verdict


NOISY = [100, 102, 98, 101, 99, 103, 97, 100, 101, 99]


@pytest.mark.parametrize(
    ("history", "current", "min_history", "anomalous"),
    [
        (NOISY, 100.5, 7, False),
        (NOISY, 200, 7, True),
        (NOISY, 0, 7, True),  # a drop is anomalous too
        (NOISY[:5], 500, 7, None),  # too little history: no verdict
        (NOISY[:7], 500, 7, True),  # exactly min_history
        ([100.0] * 10, 100.0, 7, False),  # flat baseline, equal
        ([100.0] * 10, 100.1, 7, True),  # flat baseline, any difference
        ([0.1 * 3] * 10, 0.3, 7, False),  # float noise is not a difference
        ([100.0] * 8 + [110, 90], 105, 7, False),  # MAD 0, MeanAD 2: z = 2.0
        ([100.0] * 8 + [110, 90], 120, 7, True),  # z = 8.0
    ],
)
def test_zscore(store, history, current, min_history, anomalous):
    baseline(store, history)
    put(store, WS, [row(WS, "meter-1", current)])
    ev = evaluate_window(store, make_config(anomalies=[zrule(min_history=min_history)]), WS, NOW)
    verdict = only(ev)
    assert verdict.anomalous is anomalous, verdict.detail
    [counts] = ev.rules
    assert (counts.series, counts.anomalies, counts.no_verdict) == (
        1, int(anomalous is True), int(anomalous is None),
    )  # fmt: skip
    if anomalous is None:
        assert "too little history: 5 of 7" in verdict.detail
        assert ev.metadata()["no_verdict"] == 1


def test_zscore_uses_only_the_same_slot_of_each_day(store):
    baseline(store, NOISY)
    put(store, WS - W, [row(WS - W, "meter-1", 5000)])  # the previous window: not a baseline
    put(store, WS - DAY_NS + W, [row(WS - DAY_NS + W, "meter-1", 5000)])
    put(store, WS, [row(WS, "meter-1", 100)])
    ev = evaluate_window(store, make_config(anomalies=[zrule()]), WS, NOW)
    assert only(ev).anomalous is False and "median 100" in only(ev).detail


def test_robust_z_formula():
    z, _ = robust_z(110, [100, 102, 98, 101, 99])  # median 100, MAD 1
    assert z == pytest.approx(0.6745 * 10)
    assert robust_z(99, [100.0] * 5)[0] == -math.inf


def srule(**kw):
    return {"name": "meter-silent", "kind": "silent", "measurement": "energy",
            "field": "power_w", "windows": 2, **kw}  # fmt: skip


def test_silent(store):
    yesterday = WS - DAY_NS + 4 * W
    put(store, yesterday, [row(yesterday, d, 1) for d in ("m-quiet", "m-back", "m-fine", "m-one")])
    put(store, WS - W, [row(WS - W, "m-fine", 1), row(WS - W, "m-one", 1)])
    put(store, WS, [row(WS, "m-fine", 1), row(WS, "m-back", 1), row(WS, "m-new", 1)])
    ev = evaluate_window(store, make_config(anomalies=[srule()]), WS, NOW)
    verdicts = {v.series[2]: v.anomalous for v in ev.verdicts}
    assert verdicts == {
        "m-quiet": True,  # reported yesterday, nothing in the last 2 windows
        "m-back": False, "m-fine": False, "m-new": False,
        "m-one": False,  # silent only in the last window: not yet 2
    }  # fmt: skip
    assert "last at" in next(v.detail for v in ev.verdicts if v.anomalous)


def test_silent_gives_no_verdict_when_a_window_is_not_rolled_up(store):
    yesterday = WS - DAY_NS
    put(store, yesterday, [row(yesterday, "m-quiet", 1)])
    put(store, WS, [])  # WS - W was never rolled up
    ev = evaluate_window(store, make_config(anomalies=[srule()]), WS, NOW)
    assert only(ev).anomalous is None and "not rolled up" in only(ev).detail


def test_stuck(store):
    rule = {"name": "temp-stuck", "kind": "stuck", "measurement": "energy",
            "field": "power_w", "windows": 3}  # fmt: skip
    for ws in (WS - 2 * W, WS - W, WS):
        rows = [
            row(ws, "stuck", 21.5),
            row(ws, "varies", 20, 22),
            row(ws, "steps", 20 + (ws - WS) / W),  # flat inside each window, not across
        ]
        if ws != WS - W:
            rows.append(row(ws, "gap", 21.5))
        put(store, ws, rows)
    ev = evaluate_window(store, make_config(anomalies=[rule]), WS, NOW)
    verdicts = {v.series[2]: v.anomalous for v in ev.verdicts}
    assert verdicts == {"stuck": True, "varies": False, "steps": False, "gap": None}
    assert next(v for v in ev.verdicts if v.anomalous).value == 21.5


def _anomaly_rows(location):
    """The anomaly rows, read on a connection of their own (what another process sees)."""
    from telemetry_core.alerts.db import open_alerts_db

    db = open_alerts_db(location, create=False)
    try:
        with db.read() as conn:
            rows = conn.execute("SELECT rule, device_id, window_start, value FROM anomalies")
            return [tuple(r) for r in rows.fetchall()]
    finally:
        db.close()


def test_record_is_idempotent_and_a_rerun_after_late_data_updates(store, alerts_url):
    from telemetry_core.alerts.db import is_postgres, open_alerts_db

    # SQLite: the store's own file, own tables; PostgreSQL: a database of its own
    location = alerts_url if is_postgres(alerts_url) else store.path
    db = open_alerts_db(location)
    cfg = make_config(anomalies=[zrule()], cooldown_seconds=0)
    baseline(store, NOISY)
    put(store, WS, [row(WS, "meter-1", 300)])
    first = record_anomalies(db, evaluate_window(store, cfg, WS, NOW))
    again = record_anomalies(db, evaluate_window(store, cfg, WS, NOW + 60 * S))
    assert (first.recorded, first.fired, again.recorded, again.fired) == (1, 1, 1, 0)
    assert _anomaly_rows(location) == [("power-unusual", "meter-1", WS, 300.0)]
    assert [k for k, _ in events(db)] == ["alert.firing"]
    # late data makes the window's mean normal: the row goes, the alert resolves
    put(store, WS, [row(WS, "meter-1", 100.5)])
    late = record_anomalies(db, evaluate_window(store, cfg, WS, NOW + 120 * S))
    assert (late.recorded, late.removed, late.resolved) == (0, 1, 1)
    assert _anomaly_rows(location) == []
    [(_, fired), (kind, resolved)] = events(db)
    assert kind == "alert.resolved" and resolved["alert_id"] == fired["alert_id"]
    assert fired["kind"] == "zscore" and fired["value"] == 300.0


def test_a_later_normal_window_resolves_and_an_older_one_changes_nothing(store, alerts_db):
    cfg = make_config(anomalies=[srule(windows=1)], cooldown_seconds=0)
    put(store, WS - DAY_NS, [row(WS - DAY_NS, "m-1", 1)])
    put(store, WS - W, [row(WS - W, "m-1", 1)])
    put(store, WS, [])
    put(store, WS + W, [row(WS + W, "m-1", 1)])
    record_anomalies(alerts_db, evaluate_window(store, cfg, WS, NOW))
    record_anomalies(alerts_db, evaluate_window(store, cfg, WS + W, NOW + W))
    record_anomalies(alerts_db, evaluate_window(store, cfg, WS - W, NOW + W))  # older: no-op
    evs = events(alerts_db)
    assert [(k, d["kind"], d["started_at"] < d["resolved_at"] if d["resolved_at"] else None)
            for k, d in evs] == [("alert.firing", "silent", None), ("alert.resolved", "silent", True)]  # fmt: skip


def test_stale_window_records_but_does_not_notify(store, alerts_db):
    cfg = make_config(anomalies=[zrule()])
    baseline(store, NOISY)
    put(store, WS, [row(WS, "meter-1", 300)])
    ev = evaluate_window(store, cfg, WS, WS + W + 2 * 3600 * S)
    assert ev.stale and ev.metadata()["stale_not_notified"] is True
    result = record_anomalies(alerts_db, ev)
    assert (result.recorded, result.notified, result.fired) == (1, False, 0)
    assert events(alerts_db) == []


def test_unaligned_window_is_refused(store):
    with pytest.raises(ValueError, match="15-minute boundary"):
        evaluate_window(store, make_config(anomalies=[zrule()]), WS + 1, NOW)
