"""The schemathesis CLI against a real ``telemetry api`` process, every check on.

``st run --checks all`` generates requests from ``/openapi.json`` (examples, coverage and
fuzzing phases, positive and negative data) and checks every answer: no 5xx, statuses,
content types, headers and bodies as declared, schema-valid requests accepted, invalid ones
refused. Its one exclusion (``tests/api/st_hooks.py``) is for the rules between parameters
that OpenAPI cannot express; the tests below pin that exclusion down: the server refuses
exactly the requests that break such a rule, and the hook drops nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_core.config import load_config
from telemetry_core.store import open_store
from telemetry_core.timeutil import TIME_PATTERN, format_rfc3339, now_ns, parse_rfc3339
from telemetry_core.windows import HOUR_NS
from tests.api import st_hooks
from tests.api.conftest import CONFIG, Api, serve_api, write_rollups
from tests.conftest import free_port, need_service

REPO = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
STEP_NS = 5 * 60 * 10**9
SITES = {"site-a": ("meter-7", "meter-8"), "site-b": ("meter-1",)}  # the schema's examples
ST_MAX_EXAMPLES = 200  # per operation and phase: 15-45 s on one shared core


@pytest.fixture(scope="module")
def live_api(tmp_path_factory) -> Iterator[str]:
    """A real server over the last two days of readings (and their rollups), so the
    schema's examples and relative times (``-1h``, ``-7d``) get answers that carry points."""
    root = tmp_path_factory.mktemp("st")
    config_path = root / "telemetry.toml"
    config_path.write_text(CONFIG)
    store_url = f"sqlite:///{root / 'telemetry.db'}"
    end = (now_ns() // HOUR_NS + 1) * HOUR_NS
    start = end - 48 * HOUR_NS
    points = [
        ("energy", site, device, field, t, float(k % 17) + (1.0 if field == "power_w" else 0.01))
        for site, devices in SITES.items()
        for device in devices
        for field in ("energy_kwh", "power_w")
        for k, t in enumerate(range(start, end, STEP_NS))
    ]
    store = open_store(store_url)
    try:
        store.write_points(points)
        write_rollups(store, load_config(config_path), start, end)
    finally:
        store.close()
    with serve_api(store_url, config_path, free_port()) as base:
        yield base


def test_st_run_every_check_against_a_live_server(live_api: str, tmp_path: Path):
    if not ST.exists():
        need_service(f"schemathesis CLI not found at {ST} (the dev extra installs it)")
    command = [
        str(ST), "run", f"{live_api}/openapi.json",
        "--checks", "all",
        "--max-examples", str(ST_MAX_EXAMPLES),
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(Path(st_hooks.__file__)),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    report = done.stdout[-12000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "Tested: 5" in done.stdout, report  # every operation was exercised (/v1/silences too)
    print(done.stdout[-3000:])  # the seed and any warnings, for -s or a failure nearby


# -- the exclusion: exactly the cross-parameter rules ------------------------------------

CROSS_RULES = [
    ("/v1/series", {"start": "-1h", "end": "-2h"}, "end"),
    ("/v1/series", {"start": "now", "end": "now"}, "end"),
    ("/v1/top", {"start": "2026-11-20", "end": "2026-11-19T23:00:00Z"}, "end"),
    ("/v1/series", {"scope": "site", "site": "site-a", "device": "m1"}, "device"),
    ("/v1/series", {"scope": "portfolio", "device": "m1"}, "device"),
    ("/v1/series", {"scope": "portfolio", "site": "site-a"}, "site"),
    ("/v1/series", {"scope": "site", "resolution": "raw"}, "resolution"),
    ("/v1/series", {"scope": "portfolio", "work_hours": "true"}, "work_hours"),
]


@pytest.mark.parametrize(("path", "query", "parameter"), CROSS_RULES)
def test_each_cross_parameter_rule_is_a_400_naming_its_parameter(api: Api, path, query, parameter):
    params = {"measurement": "energy", "field": "power_w", **query}
    status, body = api.get(path, **params)
    assert status == 400 and isinstance(body, dict), body
    assert body["parameter"] == parameter, body
    assert set(body) == {"error", "parameter"}
    assert st_hooks.broken_rules(path, params) == {parameter}
    assert st_hooks.refused_for_a_cross_parameter_rule(path, params, status, body)


def _failure(code: str, path: str, query: dict, status: int, body: object):
    return (
        SimpleNamespace(code=code),
        SimpleNamespace(operation=SimpleNamespace(path=path), query=query),
        SimpleNamespace(status_code=status, json=lambda: body),
    )


def test_the_hook_drops_nothing_but_cross_parameter_refusals():
    broken = {"measurement": "energy", "field": "f", "scope": "site", "device": "m1"}
    fine = {"measurement": "energy", "field": "f", "scope": "site", "site": "site-a"}
    device_400 = {"error": "device only applies at scope device", "parameter": "device"}
    kept = [
        ("ST202", "/v1/series", fine, 400, device_400),  # no rule broken: a real rejection
        ("ST202", "/v1/series", broken, 400, {"error": "x", "parameter": "field"}),
        ("ST202", "/v1/series", broken, 422, device_400),
        ("ST202", "/v1/top", broken, 400, device_400),  # /v1/top has no device rule
        ("ST202", "/v1/alerts", {"since": "-1h"}, 400, {"error": "x", "parameter": "since"}),
        ("ST101", "/v1/series", broken, 400, device_400),  # any other check's failure
    ]
    for case in kept:
        assert st_hooks.filter_failure(None, *_failure(*case)), case
    assert not st_hooks.filter_failure(
        None, *_failure("ST202", "/v1/series", broken, 400, device_400)
    )


TIMES = st.one_of(
    st.sampled_from(
        ["-1h", "-8h", "-7d", "now", "-30m", "+1h", "2026-11-10", "2026-11-12T00:00:00Z"]
    ),
    st.from_regex(TIME_PATTERN, fullmatch=True),
)


@given(
    path=st.sampled_from(["/v1/series", "/v1/top"]),
    start=st.one_of(st.none(), TIMES),
    end=st.one_of(st.none(), TIMES),
    scope=st.one_of(st.none(), st.sampled_from(["device", "site", "portfolio"])),
    resolution=st.one_of(st.none(), st.sampled_from(["auto", "raw", "15m", "1h"])),
    site=st.one_of(st.none(), st.just("site-a")),
    device=st.one_of(st.none(), st.just("m2")),
    work_hours=st.one_of(st.none(), st.sampled_from(["true", "false"])),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_schema_valid_requests_are_refused_only_for_a_cross_parameter_rule(
    api: Api, path, start, end, scope, resolution, site, device, work_hours
):
    """Schema-valid in every parameter: answered 200, or 400 naming a broken rule's
    parameter, and never a 400 when no rule is broken."""
    query = {"measurement": "energy", "field": "power_w", "start": start, "end": end}
    if path == "/v1/series":
        query |= {"scope": scope, "resolution": resolution, "site": site, "device": device,
                  "work_hours": work_hours}  # fmt: skip
    else:
        query |= {"site": site}
    query = {k: v for k, v in query.items() if v is not None}
    status, body = api.get(path, **query)
    broken = st_hooks.broken_rules(path, query)
    if broken:
        assert status == 400 and body["parameter"] in broken, (query, status, body)
    else:
        assert status == 200, (query, status, body)


def test_times_outside_the_pattern_are_400s_in_words(api: Api):
    for value in [
        "",
        "\x08.",
        " -1h",
        "-1000w",
        "2026-02-29",
        "2026-11-20T24:00:00Z",
        "2300-01-01",
    ]:
        status, body = api.get("/v1/series", measurement="energy", field="power_w", end=value)
        assert status == 400, (value, body)
        assert body["parameter"] == "end" and "neither RFC 3339" in body["error"], body
    status, body = api.get("/v1/alerts", since="")
    assert status == 400 and body["parameter"] == "since", body
    status, body = api.get("/v1/alerts", since="2200-01-01")  # the future: no alerts, no error
    assert status == 200 and body == [], body


def test_stored_times_round_trip_inside_the_pattern():
    """What the API prints (RFC 3339 UTC with every digit) is what it accepts back, for
    every year the pattern allows (1678-2261)."""
    import re

    first, last = parse_rfc3339("1678-01-01T00:00:00Z"), parse_rfc3339("2262-01-01T00:00:00Z")
    for ns in (0, 1, 1_795_000_000_123_456_789, first, last - 1):
        assert re.fullmatch(TIME_PATTERN, format_rfc3339(ns)), format_rfc3339(ns)
