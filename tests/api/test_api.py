"""The HTTP API against values computed by hand from the raw points, through a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from telemetry_core.timeutil import format_rfc3339, parse_rfc3339
from tests.api.conftest import START, Api

NS = 10**9
Q = 15 * 60 * NS
H = 3600 * NS
DAY = 24 * H

RAW_KEYS = {"time", "measurement", "site_id", "device_id", "field", "value"}
DEVICE_KEYS = {
    "window_start", "window_end", "measurement", "site_id", "device_id", "field",
    "count", "sum", "min", "max", "mean", "first", "last", "is_work_hours",
}  # fmt: skip


def iso(ns: int) -> str:
    return format_rfc3339(ns)


def berlin_work_hours(ws: int) -> bool:
    local = datetime.fromtimestamp(ws / NS, UTC).astimezone(ZoneInfo("Europe/Berlin"))
    return local.weekday() < 5 and 8 <= local.hour < 18


def by_hand(points, *, field, width, start, end, site=None, device=None, key="device"):
    """Partials of the raw points per (window, group), in plain Python."""
    groups: dict[tuple, list[tuple[int, float, str, str]]] = defaultdict(list)
    for _m, s, d, f, t, v in points:
        if f != field or not start <= t - t % width < end:
            continue
        if (site and s != site) or (device and d != device):
            continue
        group = {"device": (s, d), "site": (s,), "portfolio": ()}[key]
        groups[(t - t % width, *group)].append((t, v, s, d))
    out = {}
    for gk, readings in groups.items():
        readings.sort(key=lambda r: (r[0], r[2], r[3]))
        values = [r[1] for r in readings]
        out[gk] = {
            "count": len(values),
            "sum": sum(values),
            "min": min(values),
            "max": max(values),
            "mean": sum(values) / len(values),
            "first": readings[0][1],
            "last": readings[-1][1],
        }
    return out


def check_rows(rows, expected, keys_of):
    assert len(rows) == len(expected)
    for row in rows:
        exp = expected[keys_of(row)]
        for k, v in exp.items():
            assert row[k] == pytest.approx(v, rel=1e-12), (k, row)


def test_raw_device_series_exact(api: Api):
    start, end = START + 2 * DAY, START + 2 * DAY + H  # exactly one hour: raw
    status, body = api.get(
        "/v1/series", measurement="energy", field="power_w", site="site-a", device="m2",
        start=iso(start), end=iso(end),
    )  # fmt: skip
    assert status == 200
    assert body["resolution"] == "raw" and body["scope"] == "device"
    expected = [
        (t, v)
        for m, s, d, f, t, v in api.points
        if (s, d, f) == ("site-a", "m2", "power_w") and start <= t < end
    ]
    assert [(parse_rfc3339(p["time"]), p["value"]) for p in body["points"]] == expected
    assert all(set(p) == RAW_KEYS for p in body["points"])


@pytest.mark.parametrize(
    ("span", "resolution"),
    [
        (H, "raw"),
        (H + 1, "15m"),
        (7 * DAY, "15m"),
        (7 * DAY + 1, "1h"),
    ],
)
def test_auto_switches_exactly_at_one_hour_and_seven_days(api: Api, span, resolution):
    start = START + DAY
    status, body = api.get(
        "/v1/series", measurement="energy", field="energy_kwh", site="site-a",
        start=iso(start), end=iso(start + span),
    )  # fmt: skip
    assert status == 200, body
    assert body["resolution"] == resolution


def test_device_15m_partials_and_headline(api: Api):
    start, end = START + DAY, START + 2 * DAY
    for field, headline in (("energy_kwh", "sum"), ("power_w", "mean")):
        status, body = api.get(
            "/v1/series", measurement="energy", field=field, site="site-b", device="m4",
            start=iso(start), end=iso(end), resolution="15m",
        )  # fmt: skip
        assert status == 200
        rows = body["points"]
        assert all(set(r) == DEVICE_KEYS | {"value"} for r in rows)
        expected = by_hand(api.points, field=field, width=Q, start=start, end=end,
                           site="site-b", device="m4")  # fmt: skip
        check_rows(rows, expected,
                   lambda r: (parse_rfc3339(r["window_start"]), r["site_id"], r["device_id"]))  # fmt: skip
        for r in rows:
            assert r["value"] == r[headline]
            assert parse_rfc3339(r["window_end"]) - parse_rfc3339(r["window_start"]) == Q
            assert r["is_work_hours"] is False  # site-b has no work hours configured


def test_site_scope_reads_site_rollups(api: Api):
    start, end = START, START + 3 * DAY  # 3 days: auto -> 15m
    status, body = api.get(
        "/v1/series", measurement="energy", field="energy_kwh", scope="site", site="site-a",
        start=iso(start), end=iso(end),
    )  # fmt: skip
    assert status == 200 and body["resolution"] == "15m" and body["scope"] == "site"
    rows = body["points"]
    assert all("device_id" not in r for r in rows)
    expected = by_hand(api.points, field="energy_kwh", width=Q, start=start, end=end,
                       site="site-a", key="site")  # fmt: skip
    check_rows(rows, expected, lambda r: (parse_rfc3339(r["window_start"]), r["site_id"]))
    for r in rows:
        assert r["is_work_hours"] == berlin_work_hours(parse_rfc3339(r["window_start"]))
        assert r["value"] == r["sum"]


def test_portfolio_hourly(api: Api):
    start, end = START, START + 8 * DAY  # beyond 7 days: hourly
    status, body = api.get(
        "/v1/series", measurement="energy", field="power_w", scope="portfolio",
        start=iso(start), end=iso(end),
    )  # fmt: skip
    assert status == 200 and body["resolution"] == "1h"
    rows = body["points"]
    assert len(rows) == 8 * 24
    for r in rows:
        assert r["site_id"] is None and "device_id" not in r and "is_work_hours" not in r
    expected = by_hand(api.points, field="power_w", width=H, start=start, end=end,
                       key="portfolio")  # fmt: skip
    check_rows(rows, expected, lambda r: (parse_rfc3339(r["window_start"]),))


def test_work_hours_filter(api: Api):
    start, end = START, START + 2 * DAY
    both = {}
    for flag in ("true", "false"):
        status, body = api.get(
            "/v1/series", measurement="energy", field="energy_kwh", scope="site",
            site="site-a", start=iso(start), end=iso(end), work_hours=flag,
        )  # fmt: skip
        assert status == 200
        both[flag] = body["points"]
        assert all(r["is_work_hours"] is (flag == "true") for r in body["points"])
    # Monday and Tuesday 08:00-18:00 Berlin (UTC+1 in November): 2 x 10 h x 4 windows
    assert len(both["true"]) == 80
    assert len(both["true"]) + len(both["false"]) == 2 * 96


def test_top_sites_and_devices(api: Api):
    start, end = START, START + 30 * DAY  # a month: hourly rollups
    status, body = api.get("/v1/top", measurement="energy", field="energy_kwh", by="site",
                           start=iso(start), end=iso(end))  # fmt: skip
    assert status == 200 and body["by"] == "site"
    totals: dict[str, float] = defaultdict(float)
    for _m, s, _d, f, _t, v in api.points:
        if f == "energy_kwh":
            totals[s] += v
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    assert [p["site_id"] for p in body["points"]] == [s for s, _ in ranked]
    for p, (_, v) in zip(body["points"], ranked, strict=True):
        assert p["value"] == pytest.approx(v, rel=1e-12) and set(p) == {"site_id", "value"}

    status, body = api.get("/v1/top", measurement="energy", field="power_w", by="device",
                           limit=2, start=iso(start), end=iso(end))  # fmt: skip
    assert status == 200
    sums: dict[tuple, list[float]] = defaultdict(list)
    for _m, s, d, f, _t, v in api.points:
        if f == "power_w":
            sums[(s, d)].append(v)
    means = sorted(((k, sum(v) / len(v)) for k, v in sums.items()), key=lambda kv: -kv[1])[:2]
    assert [(p["site_id"], p["device_id"]) for p in body["points"]] == [k for k, _ in means]
    for p, (_, v) in zip(body["points"], means, strict=True):
        assert p["value"] == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"field": "power_w"}, "measurement"),
        ({"measurement": "energy"}, "field"),
        ({"measurement": "bad name", "field": "power_w"}, "measurement"),
        ({"measurement": "energy", "field": "power_w", "site": "x;drop"}, "site"),
        ({"measurement": "energy", "field": "power_w", "start": "yesterday"}, "start"),
        ({"measurement": "energy", "field": "power_w", "end": "2026-13-01T00:00:00Z"}, "end"),
        ({"measurement": "energy", "field": "power_w", "start": "-1h", "end": "-2h"}, "end"),
        ({"measurement": "energy", "field": "power_w", "scope": "building"}, "scope"),
        ({"measurement": "energy", "field": "power_w", "resolution": "5m"}, "resolution"),
        ({"measurement": "energy", "field": "power_w", "work_hours": "maybe"}, "work_hours"),
        ({"measurement": "energy", "field": "power_w", "scope": "site", "resolution": "raw"},
         "resolution"),
        ({"measurement": "energy", "field": "power_w", "scope": "site", "device": "m1"}, "device"),
    ],
)  # fmt: skip
def test_bad_series_parameter_is_400_naming_it(api: Api, params, parameter):
    status, body = api.get("/v1/series", **params)
    assert status == 400, body
    assert body["parameter"] == parameter and body["error"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"by": "zone"}, "by"),
    ],
)
def test_bad_top_parameter_is_400_naming_it(api: Api, params, parameter):
    status, body = api.get("/v1/top", measurement="energy", field="energy_kwh", **params)
    assert status == 400, body
    assert body["parameter"] == parameter


def test_openapi_and_health(api: Api):
    status, spec = api.get("/openapi.json")
    assert status == 200
    assert {"/v1/series", "/v1/top", "/health"} <= set(spec["paths"])
    status, body = api.get("/health")
    assert status == 200 and body["status"] == "ok"


def test_cli_query_auto_matches_the_api(api: Api):
    start, end = START + DAY, START + DAY + 6 * H
    for scope in ("device", "site"):
        args = ["--measurement", "energy", "--field", "power_w", "--start", iso(start),
                "--end", iso(end), "--scope", scope, "--site", "site-a", "--format", "json"]  # fmt: skip
        env = {**os.environ, "TELEMETRY_STORE_URL": api.store_url,
               "TELEMETRY_CONFIG": api.config_path}  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "telemetry_cli", "query", *args],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        cli_rows = json.loads(out.stdout)
        status, body = api.get("/v1/series", measurement="energy", field="power_w",
                               start=iso(start), end=iso(end), scope=scope, site="site-a")  # fmt: skip
        assert status == 200 and body["resolution"] == "15m"
        assert cli_rows == [{k: v for k, v in p.items() if k != "value"} for p in body["points"]]


def test_alerts_endpoint_matches_the_cli(api: Api):
    """An alert fired by the daemon's threshold engine, read back over HTTP and the CLI."""
    import time as _time

    from telemetry_core.alerts import ThresholdEngine, open_alerts_db
    from telemetry_core.config import parse_config

    config = parse_config(
        {
            "thresholds": [
                {
                    "measurement": "energy",
                    "field": "power_w",
                    "above": 5000.0,
                    "severity": "critical",
                    "name": "api-test-high",
                }
            ]
        }
    )
    db = open_alerts_db(store_url=api.store_url)
    try:
        now = _time.time_ns()
        ThresholdEngine(config, db).apply(
            [("energy", "site-a", "m9", "power_w", now - 10**9, 9000.0)], [1], now
        )
    finally:
        db.close()
    status, body = api.get("/v1/alerts")
    assert status == 200
    fired = [a for a in body if a["rule"] == "api-test-high"]
    assert len(fired) == 1
    assert fired[0]["state"] == "firing" and fired[0]["value"] == 9000.0
    assert fired[0]["kind"] == "threshold" and fired[0]["device_id"] == "m9"
    env = {**os.environ, "TELEMETRY_STORE_URL": api.store_url}
    env.pop("TELEMETRY_ALERTS_DB", None)
    out = subprocess.run([sys.executable, "-m", "telemetry_cli", "alerts", "--format", "json"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == body
    assert api.get("/v1/alerts", state="resolved")[1] == []
    assert api.get("/v1/alerts", state="bogus")[0] == 400


def test_silences_endpoint_matches_the_cli(api: Api):
    env = {**os.environ, "TELEMETRY_STORE_URL": api.store_url}
    add = [sys.executable, "-m", "telemetry_cli", "silence", "add", "--match", "site_id=site-a",
           "--for", "1h", "--comment", "api test", "--format", "json"]  # fmt: skip
    created = json.loads(subprocess.run(add, env=env, capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
    listing = [sys.executable, "-m", "telemetry_cli", "silence", "list", "--state", "all",
               "--format", "json"]  # fmt: skip
    cli = json.loads(subprocess.run(listing, env=env, capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip
    status, body = api.get("/v1/silences")
    assert status == 200
    assert body == cli and created in body
    assert set(body[0]) == {"silence_id", "matchers", "starts_at", "ends_at", "comment",
                            "created_by", "state"}  # fmt: skip
