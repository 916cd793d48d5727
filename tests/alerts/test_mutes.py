"""Silences, maintenance windows and inhibition, below the servers: matchers, durations,
the maintenance calendar across DST, and what the lifecycle records when a mute holds,
ends, or hid a firing whose resolve follows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from telemetry_core.alerts import lifecycle
from telemetry_core.alerts.anomalies import evaluate_window
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.alerts.lifecycle import release_ended
from telemetry_core.alerts.listing import list_alerts
from telemetry_core.alerts.matchers import matches, parse_duration, parse_match_args
from telemetry_core.alerts.mutes import (
    add_silence,
    expire_silence,
    has_released,
    list_silences,
)
from telemetry_core.alerts.recording import record_anomalies
from telemetry_core.config import ConfigError, parse_config
from telemetry_core.timeutil import from_datetime
from tests.alerts.conftest import T0, S, events
from tests.alerts.test_anomalies import NOW, WS, W, put, row, srule, store  # noqa: F401

H = 3600 * S
POWER_HIGH = {"name": "power-high", "measurement": "energy", "field": "power_w", "above": 5000}
FILES = [{"name": "log", "path": "/dev/null"}]


def cfg(**extra):
    alerts = {"files": FILES, "cooldown_seconds": 0, **extra.pop("alerts", {})}
    return parse_config({"thresholds": [POWER_HIGH], "alerts": alerts, **extra})


def point(seconds, value, device="meter-7", site="site-a"):
    return ("energy", site, device, "power_w", T0 + round(seconds * S), value)


def suppressed_reasons(db):
    return [
        (d["event"], d["reason"])
        for a in list_alerts(db)
        for d in a["deliveries"]
        if d["outcome"] == "suppressed"
    ]


# -- matchers and durations ----------------------------------------------------------------
LABELS = {"rule": "power-high", "kind": "threshold", "severity": "warning",
          "measurement": "energy", "site_id": "site-a", "device_id": "meter-7",
          "field": "power_w"}  # fmt: skip


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ({"site_id": "site-a"}, True),
        ({"site_id": "site-a", "device_id": "meter-7"}, True),
        ({"site_id": "site-a", "device_id": "meter-8"}, False),  # all must hold
        ({"device_id": "meter-*"}, True),
        ({"device_id": "*-7"}, True),
        ({"device_id": "m*r*7"}, True),
        ({"device_id": "meter"}, False),  # exact without *
        ({"rule": "power.high"}, False),  # . is literal
        ({"site_id": "*"}, True),
        ({}, False),  # an empty silence mutes nothing
    ],
)
def test_matchers(matchers, expected):
    assert matches(matchers, LABELS) is expected


def test_site_level_alert_has_an_empty_device_label_that_star_matches():
    assert matches({"device_id": "*"}, {**LABELS, "device_id": ""})


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds * S


@pytest.mark.parametrize("text", ["", "2", "2x", "-1h", "0s", "1.5h", "h"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [(["site_id"], "KEY=VALUE"), (["colour=red"], "unknown label 'colour'"),
     (["site_id="], "non-empty"), (["site_id=a", "site_id=b"], "twice")],
)  # fmt: skip
def test_bad_match_args(pairs, message):
    with pytest.raises(ConfigError, match=message):
        parse_match_args(pairs)


# -- maintenance windows ----------------------------------------------------------------
def ns(text: str) -> int:
    return from_datetime(datetime.fromisoformat(text).astimezone(UTC))


def window(**kw):
    sites = {"site-b": {"timezone": "America/New_York"}}
    [w] = parse_config({"sites": sites, "maintenance": [kw]}).alerts.maintenance
    return w


def test_recurring_window_follows_the_site_zone_across_dst():
    w = window(name="b-sunday", match={"site_id": "site-b"}, days=["sun"], start="02:00",
               end="06:00")  # fmt: skip
    assert w.timezone == "America/New_York"
    # 2026-03-01, EST (UTC-5): 02:00-06:00 local is 07:00-11:00Z
    assert not w.active(ns("2026-03-01T06:59:59+00:00"))
    assert w.active(ns("2026-03-01T07:00:00+00:00"))
    assert w.active(ns("2026-03-01T10:30:00+00:00"))
    assert not w.active(ns("2026-03-01T11:00:00+00:00"))
    # 2026-03-08, DST starts at 02:00 (clocks jump to 03:00, EDT UTC-4): 02:00 local does
    # not exist, the window runs from 03:00 EDT (07:00Z) to 06:00 EDT (10:00Z)
    assert w.active(ns("2026-03-08T07:00:00+00:00"))
    assert w.active(ns("2026-03-08T09:59:59+00:00"))
    assert not w.active(ns("2026-03-08T10:30:00+00:00"))  # active a week earlier
    # 2026-03-15, EDT: 06:00-10:00Z
    assert w.active(ns("2026-03-15T06:00:00+00:00"))
    assert not w.active(ns("2026-03-15T10:00:00+00:00"))
    assert not w.active(ns("2026-03-16T07:00:00+00:00"))  # a Monday


def test_recurring_window_spanning_midnight_and_utc_without_a_site():
    w = window(name="nightly", match={"rule": "power-*"}, days=["sat"], start="22:00",
               end="02:00")  # fmt: skip
    assert w.timezone == "UTC"
    assert w.active(ns("2026-03-07T23:00:00+00:00"))  # Saturday night
    assert w.active(ns("2026-03-08T01:59:00+00:00"))  # into Sunday
    assert not w.active(ns("2026-03-08T02:00:00+00:00"))
    assert not w.active(ns("2026-03-08T23:00:00+00:00"))  # Sunday night is not listed


def test_one_off_window():
    w = window(name="swap", match={"device_id": "meter-7"},
               **{"from": datetime(2026, 12, 24, 8, tzinfo=UTC), "until": "2026-12-24T12:00:00Z"})  # fmt: skip
    assert not w.active(ns("2026-12-24T07:59:59+00:00"))
    assert w.active(ns("2026-12-24T08:00:00+00:00"))
    assert not w.active(ns("2026-12-24T12:00:00+00:00"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "w", "days": ["sun"], "start": "02:00", "end": "06:00"}, "needs at least one matcher"),
        ({"name": "w", "match": {"site": "a"}, "start": "02:00", "end": "06:00"}, "unknown label 'site'"),
        ({"name": "w", "match": {"site_id": "a"}, "start": "2am", "end": "06:00"}, "HH:MM"),
        ({"name": "w", "match": {"site_id": "a"}, "days": ["sunday"], "start": "02:00", "end": "06:00"}, "days"),
        ({"name": "w", "match": {"site_id": "a"}, "start": "02:00"}, "needs start and end"),
        ({"name": "w", "match": {"site_id": "a"}, "from": "2026-12-24T08:00:00Z"}, "both 'from' and 'until'"),
        ({"name": "w", "match": {"site_id": "a"}, "from": "2026-12-24T08:00:00Z", "until": "2026-12-24T07:00:00Z"}, "later"),
        ({"name": "w", "match": {"site_id": "a"}, "from": "yesterday", "until": "2026-12-24T07:00:00Z"}, "must be a time"),
        ({"name": "w", "match": {"site_id": "a"}, "start": "02:00", "end": "06:00", "until": "2026-12-24T07:00:00Z"}, "not both"),
        ({"name": "w", "match": {"site_id": "a"}, "start": "02:00", "end": "06:00", "zone": "x"}, "unknown key 'zone'"),
    ],
)  # fmt: skip
def test_maintenance_errors_are_one_line_naming_the_window(raw, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config({"maintenance": [raw]})
    assert str(caught.value).startswith("[[maintenance]] #1 (w)") or "#1 (w)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_inhibit_and_site_scope_config_errors():
    with pytest.raises(ConfigError, match="equal must be a list of labels"):
        parse_config({"alerts": {"inhibit": [{"source": {"rule": "a"}, "target": {"kind": "silent"},
                                               "equal": ["site"]}]}})  # fmt: skip
    with pytest.raises(ConfigError, match='for kind = "silent" only'):
        parse_config({"anomalies": [{"kind": "stuck", "scope": "site", "measurement": "energy",
                                     "field": "power_w"}]})  # fmt: skip


# -- silences in the lifecycle ------------------------------------------------------------
def test_silence_suppresses_then_its_early_expiry_releases_one_firing(alerts_db):
    config = cfg()
    silence = add_silence(alerts_db, {"device_id": "meter-*"}, starts_at=T0 - H, ends_at=T0 + H,
                          comment="swap", created_by="ops", now_ns=T0 - H)  # fmt: skip
    engine = ThresholdEngine(config, alerts_db)
    engine.apply([point(0, 6000)], None, T0)
    [alert] = list_alerts(alerts_db)
    assert alert["state"] == "firing"  # recorded as always
    assert suppressed_reasons(alerts_db) == [("firing", f"silence {silence.silence_id}")]
    assert not has_released(alerts_db, config.alerts, T0 + 60 * S)
    assert release_ended(alerts_db, config.alerts, T0 + 60 * S) == 0
    expire_silence(alerts_db, silence.silence_id, T0 + 120 * S)
    assert has_released(alerts_db, config.alerts, T0 + 121 * S)
    assert release_ended(alerts_db, config.alerts, T0 + 121 * S) == 1
    assert release_ended(alerts_db, config.alerts, T0 + 122 * S) == 0  # once
    assert not has_released(alerts_db, config.alerts, T0 + 123 * S)
    assert [k for k, _ in events(alerts_db)] == ["alert.firing", "alert.firing"]
    outcomes = [(d["event"], d["outcome"]) for d in list_alerts(alerts_db)[0]["deliveries"]]
    assert outcomes == [("firing", "suppressed"), ("firing", "pending")]
    engine.apply([point(200, 10)], None, T0 + 200 * S)  # heard, so its resolve goes out
    assert [d["outcome"] for d in list_alerts(alerts_db)[0]["deliveries"]][-1] == "pending"


def test_resolve_of_an_unheard_firing_is_suppressed_with_the_mute_reason(alerts_db):
    config = cfg()
    silence = add_silence(alerts_db, {"site_id": "site-a"}, starts_at=T0 - H, ends_at=T0 + H,
                          comment="works", created_by="ops", now_ns=T0 - H)  # fmt: skip
    engine = ThresholdEngine(config, alerts_db)
    engine.apply([point(0, 6000)], None, T0)
    engine.apply([point(10, 10)], None, T0 + 10 * S)
    reason = f"silence {silence.silence_id}"
    assert suppressed_reasons(alerts_db) == [("firing", reason), ("resolved", reason)]
    expire_silence(alerts_db, silence.silence_id, T0 + 20 * S)
    assert release_ended(alerts_db, config.alerts, T0 + 30 * S) == 0  # resolved: nothing due


def test_pending_silence_and_listing_states(alerts_db):
    now = T0
    a = add_silence(alerts_db, {"rule": "x"}, starts_at=now + H, ends_at=now + 2 * H,
                    comment="later", created_by="me", now_ns=now)  # fmt: skip
    b = add_silence(alerts_db, {"rule": "y"}, starts_at=now - H, ends_at=now + H,
                    comment="now", created_by="me", now_ns=now)  # fmt: skip
    listed = list_silences(alerts_db, ("active", "pending"), now)
    assert {s["silence_id"]: s["state"] for s in listed} == {a.silence_id: "pending",
                                                              b.silence_id: "active"}  # fmt: skip
    assert set(listed[0]) == {"silence_id", "matchers", "starts_at", "ends_at", "comment",
                              "created_by", "state"}  # fmt: skip
    expire_silence(alerts_db, a.silence_id, now + 1)
    assert [s["state"] for s in list_silences(alerts_db, ("expired",), now + 2)] == ["expired"]
    assert expire_silence(alerts_db, "sil_nope", now) is None
    with pytest.raises(ConfigError, match="comment"):
        add_silence(alerts_db, {"rule": "x"}, starts_at=now, ends_at=now + H, comment=" ",
                    created_by="me", now_ns=now)  # fmt: skip


def test_maintenance_window_suppresses_and_releases_when_it_closes(alerts_db):
    one_off = {"name": "meter-7-swap", "match": {"site_id": "site-a", "device_id": "meter-7"},
               "from": "2026-01-01T00:00:00Z", "until": lifecycle.format_rfc3339(T0 + 60 * S)}  # fmt: skip
    config = cfg(maintenance=[one_off])
    engine = ThresholdEngine(config, alerts_db)
    engine.apply([point(0, 6000), point(0, 6000, device="meter-8")], None, T0)
    assert suppressed_reasons(alerts_db) == [("firing", "maintenance meter-7-swap")]
    assert not has_released(alerts_db, config.alerts, T0 + 59 * S)
    assert release_ended(alerts_db, config.alerts, T0 + 60 * S) == 1


def test_cooldown_reason(alerts_db):
    config = cfg(alerts={"cooldown_seconds": 900})
    engine = ThresholdEngine(config, alerts_db)
    engine.apply([point(0, 6000)], None, T0)
    engine.apply([point(10, 10)], None, T0 + 10 * S)
    engine.apply([point(20, 6000)], None, T0 + 20 * S)
    assert suppressed_reasons(alerts_db) == [("firing", "cooldown")]
    assert not has_released(alerts_db, config.alerts, T0 + 10 * H)  # cooldown never releases


# -- inhibition and the site-level silent rule --------------------------------------------
INHIBIT = {"source": {"rule": "site-dark"}, "target": {"kind": "silent"}, "equal": ["site_id"]}
SITE_DARK = srule(name="site-dark", scope="site", severity="critical")


def test_site_dark_inhibits_its_device_silent_alerts(store, alerts_db):  # noqa: F811
    config = parse_config({
        "anomalies": [srule(), SITE_DARK],
        "alerts": {"files": FILES, "cooldown_seconds": 0, "inhibit": [INHIBIT]},
    })  # fmt: skip
    yesterday = WS - 90 * W
    put(store, yesterday, [row(yesterday, d, 1, site=s)
                           for s, d in [("site-a", "m-1"), ("site-a", "m-2"), ("site-b", "m-3"),
                                        ("site-b", "m-4")]])  # fmt: skip
    put(store, WS - W, [row(WS - W, "m-3", 1, site="site-b")])  # site-b: m-4 is quiet
    put(store, WS, [row(WS, "m-3", 1, site="site-b")])
    record_anomalies(alerts_db, evaluate_window(store, config, WS, NOW))
    alerts = {(a["rule"], a["site_id"], a["device_id"]): a for a in list_alerts(alerts_db)}
    assert set(alerts) == {("site-dark", "site-a", None), ("meter-silent", "site-a", "m-1"),
                           ("meter-silent", "site-a", "m-2"), ("meter-silent", "site-b", "m-4")}  # fmt: skip
    dark = alerts[("site-dark", "site-a", None)]
    assert [d["outcome"] for d in dark["deliveries"]] == ["pending"]  # one alert for the site
    for device in ("m-1", "m-2"):
        [entry] = alerts[("meter-silent", "site-a", device)]["deliveries"]
        assert (entry["outcome"], entry["reason"]) == (
            "suppressed",
            f"inhibited by {dark['alert_id']}",
        )
    assert [d["outcome"] for d in alerts[("meter-silent", "site-b", "m-4")]["deliveries"]] == [
        "pending"]  # another site: not inhibited  # fmt: skip
    fired = [d for k, d in events(alerts_db) if k == "alert.firing" and d["rule"] == "site-dark"]
    assert fired[0]["device_id"] is None  # the webhook body of a site alert: no device


def test_ingest_check_names_the_bad_window_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('[[maintenance]]\nname = "site-a-sunday"\nmatch = { site_id = "site-a" }\n'
                   'days = ["sunday"]\nstart = "02:00"\nend = "06:00"\n')  # fmt: skip
    env = {**os.environ, "TELEMETRY_CONFIG": str(bad),
           "TELEMETRY_STORE_URL": f"sqlite:///{tmp_path / 't.db'}"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "telemetry_cli", "ingest", "--check"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "[[maintenance]] #1 (site-a-sunday): days must be" in line


def test_inhibited_alert_is_released_when_its_source_resolves(alerts_db):
    feed = {"name": "feed-high", "measurement": "energy", "field": "feed_w", "above": 100}
    inhibit = {"source": {"rule": "feed-high"}, "target": {"rule": "power-*"},
               "equal": ["site_id"]}  # fmt: skip
    config = parse_config({"thresholds": [POWER_HIGH, feed],
                           "alerts": {"files": FILES, "cooldown_seconds": 0,
                                      "inhibit": [inhibit]}})  # fmt: skip
    engine = ThresholdEngine(config, alerts_db)
    feed_point = ("energy", "site-a", "feeder", "feed_w", T0, 500.0)
    engine.apply([feed_point], None, T0)
    engine.apply([point(1, 6000), point(1, 6000, site="site-b")], None, T0 + S)
    source = next(a for a in list_alerts(alerts_db) if a["rule"] == "feed-high")
    assert suppressed_reasons(alerts_db) == [("firing", f"inhibited by {source['alert_id']}")]
    assert not has_released(alerts_db, config.alerts, T0 + 2 * S)
    engine.apply([(*feed_point[:4], T0 + 3 * S, 1.0)], None, T0 + 3 * S)  # the source resolves
    assert has_released(alerts_db, config.alerts, T0 + 4 * S)
    assert release_ended(alerts_db, config.alerts, T0 + 4 * S) == 1
    target = next(a for a in list_alerts(alerts_db) if a["site_id"] == "site-a"
                  and a["rule"] == "power-high")  # fmt: skip
    assert [(d["event"], d["outcome"]) for d in target["deliveries"]] == [
        ("firing", "suppressed"), ("firing", "pending")]  # fmt: skip


def test_a_source_firing_in_the_same_batch_inhibits_its_targets(alerts_db):
    feed = {"name": "feed-high", "measurement": "energy", "field": "feed_w", "above": 100}
    inhibit = {"source": {"rule": "feed-high"}, "target": {"rule": "power-*"}}
    config = parse_config({"thresholds": [POWER_HIGH, feed],
                           "alerts": {"files": FILES, "inhibit": [inhibit]}})  # fmt: skip
    engine = ThresholdEngine(config, alerts_db)
    engine.apply([point(0, 6000), ("energy", "site-a", "feeder", "feed_w", T0, 500.0)], None, T0)
    [(event, why)] = suppressed_reasons(alerts_db)
    assert event == "firing" and why.startswith("inhibited by alert_")
