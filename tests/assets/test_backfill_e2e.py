"""End to end through a real ``dagster dev`` (webserver + daemon): ``telemetry backfill``
launches a backfill over GraphQL, the daemon runs it, the store holds the rollups."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from telemetry_cli.dagster_local import graphql, start_dagster, wait_ready
from telemetry_core.config import load_config
from telemetry_core.store import open_store
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


DAY2 = ns("2026-11-21T06:00:00Z")  # the site-scoped backfill's hour


def prepare_site_scope_case(env: dict[str, str], store) -> list[tuple]:
    """Day 2: roll up one hour in process, then change both sites' raw values; returns
    site-b's rows, which the site-scoped backfill must leave exactly as they are."""
    import dagster as dg

    from telemetry_assets.definitions import build_defs

    store.write_points(fleet_points(DAY2, 1, seed=1))
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        for key, value in env.items():
            mp.setenv(key, value)
        result = (
            build_defs()
            .resolve_job_def("rollup_15m_job")
            .execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "2026-11-21-06:00",
                    "dagster/asset_partition_range_end": "2026-11-21-06:45",
                },
            )
        )
        assert result.success
    before_b = store.read_rollups("15m", DAY2, DAY2 + 3600 * 10**9, site_id="site-b").rows()
    assert before_b
    store.write_points(fleet_points(DAY2, 1, seed=2))  # new values for both sites
    # Those writes marked the windows late; the running late-data sensor would rightly
    # recompute every site. Clear the marks: this case is about the --site scope.
    marks = store.late_windows(1000)
    store.clear_late_windows([(m.window_start, m.site_id) for m in marks], 2**62)
    return before_b


DAY3 = ns("2026-11-19T06:00:00Z")  # the late-data case's hour
LATE_POINT = ("energy", "site-a", "m1", "power_w", ns("2026-11-19T06:20:00Z"), 12345.0)


def prepare_late_data_case(env: dict[str, str], store) -> None:
    """Day 3: an hour rolled up at every level, then a late point lands in 06:15."""
    import dagster as dg

    from telemetry_assets.definitions import build_defs

    store.write_points(fleet_points(DAY3, 1, seed=3))
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        for key, value in env.items():
            mp.setenv(key, value)
        for job, start, end in (
            ("rollup_15m_job", "2026-11-19-06:00", "2026-11-19-06:45"),
            ("rollup_1h_job", "2026-11-19-06:00", "2026-11-19-06:00"),
        ):
            assert (
                build_defs()
                .resolve_job_def(job)
                .execute_in_process(
                    instance=instance,
                    tags={
                        "dagster/asset_partition_range_start": start,
                        "dagster/asset_partition_range_end": end,
                    },
                )
                .success
            )
    result = store.write_points([LATE_POINT])
    assert result.late_windows == ((ns("2026-11-19T06:15:00Z"), "site-a"),)


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
        yield {
            "url": url,
            "env": env,
            "store": store,
            "log": log,
            "scoped_id": scoped_id,
            "before_b": before_b,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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

    # The backfill is the real thing: the instance knows it and its runs.
    data = graphql(
        url,
        "query { partitionBackfillsOrError(limit: 5) { __typename "
        "... on PartitionBackfills { results { id status } } } }",
    )
    results = data["partitionBackfillsOrError"]["results"]
    assert {r["status"] for r in results} <= {"REQUESTED", "COMPLETED", "COMPLETED_SUCCESS"}
    assert len(results) == 2  # this one and the site-scoped one


def test_site_scoped_backfill_rewrites_only_that_site(dagster_dev):
    from telemetry_cli.backfill import PROGRESS

    url, env, store = dagster_dev["url"], dagster_dev["env"], dagster_dev["store"]
    deadline = time.monotonic() + 120
    while True:
        data = graphql(url, PROGRESS, {"id": dagster_dev["scoped_id"]})
        status = data["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED",) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS")
    hour = (DAY2, DAY2 + 3600 * 10**9)
    assert store.read_rollups("15m", *hour, site_id="site-b").rows() == dagster_dev["before_b"]
    want = recompute(store, *hour, load_config(env["TELEMETRY_CONFIG"]))["15m"]
    assert_rows_close(
        store.read_rollups("15m", *hour, site_id="site-a"),
        want.filter(want["site_id"] == "site-a"),
    )


def test_unknown_asset_and_bad_range_are_one_line_errors(dagster_dev):
    url, env = dagster_dev["url"], dagster_dev["env"]
    out = telemetry(
        "backfill", "--start", "2025-01-01", "--end", "2025-02-01", "--url", url, env=env
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "first partition" in out.stderr
    assert "Traceback" not in out.stderr


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
