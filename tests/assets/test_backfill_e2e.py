"""End to end through a real ``dagster dev`` (webserver + daemon): ``telemetry backfill``
launches a backfill over GraphQL, the daemon runs it, the store holds the rollups."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from telemetry_cli.dagster_graphql import graphql, wait_ready
from telemetry_cli.demo.dagster_dev import start_dagster, stop_dagster
from telemetry_core.config import load_config
from telemetry_core.store import open_store
from tests.assets.backfill_cases import (
    DAY2,
    DAY3,
    DAY4,
    HOUR_NS,
    REFUSAL,
    prepare_late_data_case,
    prepare_refusing_store_case,
    prepare_site_scope_case,
)
from tests.assets.rollup_helpers import (
    CONFIG_TOML,
    LEVELS,
    assert_rows_close,
    fleet_points,
    free_port,
    ns,
    recompute,
)

pytestmark = pytest.mark.slow

START = ns("2026-11-20T06:00:00Z")
HOURS = 2


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    (folder / "telemetry.toml").write_text(CONFIG_TOML)
    env = {
        "TELEMETRY_STORE_URL": f"sqlite:///{folder / 'telemetry.db'}",
        "TELEMETRY_CONFIG": str(folder / "telemetry.toml"),
    }
    store = open_store(env["TELEMETRY_STORE_URL"])
    store.write_points(fleet_points(START, HOURS))
    before_b = prepare_site_scope_case(env, store)
    prepare_late_data_case(env, store)  # the daemon's late-data sensor picks it up
    prepare_refusing_store_case(env, store)
    failing = None
    port = free_port()
    log = folder / "dagster.log"
    proc = start_dagster(folder / "dagster_home", port, env, log_path=log)
    try:
        if not wait_ready(port, 150, proc=proc):
            pytest.fail(f"dagster dev did not become ready:\n{log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{port}"
        # Launched now, followed by the site-scope test: both backfills run side by side,
        # so the daemon's 30-second passes are paid once.
        scoped = telemetry(
            "backfill",
            "--start", "2026-11-21T06:00:00Z",
            "--end", "2026-11-21T07:00:00Z",
            "--site", "site-a",
            "--assets", "rollup_15m",
            "--url", url,
            "--no-wait",
            env=env,
        )  # fmt: skip
        assert scoped.returncode == 0, scoped.stderr
        scoped_id = scoped.stdout.split()[1].rstrip(":")
        # Followed to its end by the CLI while the other tests run (same daemon passes).
        failing = subprocess.Popen(
            [sys.executable, "-m", "telemetry_cli", "backfill",
             "--start", "2026-11-18T06:00:00Z", "--end", "2026-11-18T07:00:00Z",
             "--assets", "rollup_15m", "--url", url, "--poll", "1"],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        yield {
            "failing": failing,
            "url": url,
            "env": env,
            "store": store,
            "log": log,
            "scoped_id": scoped_id,
            "before_b": before_b,
        }
    finally:
        if failing is not None and failing.poll() is None:
            failing.kill()
            failing.communicate()
        stop_dagster(proc)
        store.close()


def telemetry(*args: str, env: dict[str, str], timeout: float = 150) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "telemetry_cli", *args]
    return subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


def test_backfill_through_dagster_dev(dagster_dev):
    url, env, store, log = (dagster_dev[k] for k in ("url", "env", "store", "log"))
    t0 = time.monotonic()
    out = telemetry(
        "backfill",
        "--start", "2026-11-20T06:00:00Z",
        "--end", "2026-11-20T08:00:00Z",
        "--url", url,
        "--poll", "1",
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr + log.read_text()[-3000:]
    assert "completed" in out.stdout
    assert "30/30 asset partitions done" in out.stdout  # 3 assets x 8 quarters + 3 x 2 hours
    day1 = (START, START + HOURS * 3600 * 10**9)
    want = recompute(store, *day1, load_config(env["TELEMETRY_CONFIG"]))
    for level in LEVELS:
        assert_rows_close(store.read_rollups(level, *day1), want[level])
    print(f"backfill took {time.monotonic() - t0:.1f}s")

    # The backfill is the real thing: the instance knows it, and the daemon marks it
    # COMPLETED_SUCCESS at a later pass (up to 30 s after the data is complete).
    backfill_id = out.stdout.split()[1].rstrip(":")
    assert wait_for_status(url, backfill_id) == "COMPLETED_SUCCESS"


def wait_for_status(url: str, backfill_id: str, timeout: float = 150) -> str:
    """The backfill's status once it left REQUESTED (or REQUESTED at the deadline)."""
    from telemetry_cli.backfill.progress import PROGRESS

    deadline = time.monotonic() + timeout
    while True:
        data = graphql(url, PROGRESS, {"id": backfill_id})["partitionBackfillOrError"]
        if data["status"] != "REQUESTED" or time.monotonic() > deadline:
            return data["status"]
        time.sleep(1)


def test_site_scoped_backfill_rewrites_only_that_site(dagster_dev):
    url, env, store = dagster_dev["url"], dagster_dev["env"], dagster_dev["store"]
    assert wait_for_status(url, dagster_dev["scoped_id"]) == "COMPLETED_SUCCESS"
    hour = (DAY2, DAY2 + 3600 * 10**9)
    assert store.read_rollups("15m", *hour, site_id="site-b").rows() == dagster_dev["before_b"]
    want = recompute(store, *hour, load_config(env["TELEMETRY_CONFIG"]))["15m"]
    assert_rows_close(
        store.read_rollups("15m", *hour, site_id="site-a"),
        want.filter(want["site_id"] == "site-a"),
    )


def test_bad_range_is_a_one_line_error(dagster_dev):
    url, env = dagster_dev["url"], dagster_dev["env"]
    out = telemetry(
        "backfill", "--start", "2025-01-01", "--end", "2025-02-01", "--url", url, env=env
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "first partition (2026-01-01T00:00:00Z)" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_asset_is_refused_in_one_line(dagster_dev, monkeypatch, capsys):
    url, env = dagster_dev["url"], dagster_dev["env"]
    # the CLI knows the assets (from ROLLUP_SPECS) and refuses others before calling Dagster
    out = telemetry(
        "backfill", "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T07:00:00Z",
        "--assets", "rollup_5m", "--url", url, env=env,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "invalid choice: 'rollup_5m'" in out.stderr and "rollup_15m" in out.stderr
    # a CLI whose spec has a level this webserver's code location lacks (version skew):
    # Dagster itself refuses the unknown asset, still one line, nothing launched
    from telemetry_cli.backfill import launch
    from telemetry_cli.main import main

    grains = {**launch.asset_grains(), "rollup_5m": "15m"}
    monkeypatch.setattr(launch, "asset_grains", lambda: grains)
    before = graphql(url, BACKFILL_IDS)["partitionBackfillsOrError"]["results"]
    code = main(
        ["backfill", "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T07:00:00Z",
         "--assets", "rollup_5m", "--url", url, "--no-wait"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "rollup_5m" in err and "Traceback" not in err
    # nothing launched by this call (the fixture's own backfills may appear meanwhile)
    after = graphql(url, BACKFILL_IDS)["partitionBackfillsOrError"]["results"]
    new = [b for b in after if b not in before]
    assert not [b for b in new if {"path": ["rollup_5m"]} in (b["assetSelection"] or [])], new


BACKFILL_IDS = (
    "query { partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills"
    " { results { id assetSelection { path } } } } }"
)


def test_a_failed_backfill_exits_1(dagster_dev):
    """The store refuses the hour's rows: the run fails, Dagster marks the backfill failed,
    and `telemetry backfill` (which followed it) exits 1 with one line on stderr."""
    url, store = dagster_dev["url"], dagster_dev["store"]
    failing = dagster_dev["failing"]
    out, err = failing.communicate(timeout=300)
    assert failing.returncode == 1, out + err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    backfill_id = out.split()[1].rstrip(":")
    assert f"backfill {backfill_id} completed_failed" in err or "failed" in err.lower()
    assert wait_for_status(url, backfill_id) in ("COMPLETED_FAILED", "FAILED")
    runs = graphql(
        url,
        "query($id: String!) { partitionBackfillOrError(backfillId: $id) { "
        "... on PartitionBackfill { runs { runId status } } } }",
        {"id": backfill_id},
    )["partitionBackfillOrError"]["runs"]
    assert [r["status"] for r in runs] == ["FAILURE"]
    events = graphql(url, RUN_FAILURES, {"id": runs[0]["runId"]})["logsForRun"]["events"]
    errors = [e["error"] for e in events if e.get("error")]
    messages = [m["message"] for e in errors for m in (e, *e["causes"])]
    assert any(REFUSAL in m for m in messages), messages  # failed because the store refused
    assert store.read_rollups("15m", DAY4, DAY4 + HOUR_NS).height == 0


RUN_FAILURES = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { error { message causes { message } } } } } } }
"""


def test_late_data_sensor_rematerialises_in_the_daemon(dagster_dev):
    """The running late_data_sensor re-runs 06:15 and then its hour, then clears the mark;
    the rollups then equal a from-scratch recomputation including the late point."""
    store, env = dagster_dev["store"], dagster_dev["env"]
    deadline = time.monotonic() + 150
    while store.late_windows() and time.monotonic() < deadline:
        time.sleep(1)
    assert store.late_windows() == [], "the late-data sensor did not clear the mark in time"
    hour = (DAY3, DAY3 + 3600 * 10**9)
    want = recompute(store, *hour, load_config(env["TELEMETRY_CONFIG"]))
    for level in LEVELS:
        assert_rows_close(store.read_rollups(level, *hour), want[level])
    row = store.read_rollups("1h", *hour, site_id="site-a", device_id="m1", field="power_w")
    assert row["max"][0] == 12345.0  # the late point is in the hour
    runs = graphql(
        dagster_dev["url"],
        'query { runsOrError(filter: {tags: [{key: "telemetry/late_stage", value: "1h"}]}) '
        "{ ... on Runs { results { status tags { key value } } } } }",
    )["runsOrError"]["results"]
    assert [r["status"] for r in runs] == ["SUCCESS"]
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert tags["dagster/partition"] == "2026-11-19-06:00"
