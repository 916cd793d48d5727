"""End to end through a real ``dagster dev`` (webserver + daemon): ``telemetry backfill``
launches a backfill over GraphQL, the daemon runs it, the store holds the rollups."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from rollup_helpers import (
    CONFIG_TOML,
    FAR,
    LEVELS,
    assert_rows_close,
    fleet_points,
    free_port,
    ns,
    recompute,
)

from telemetry_assets.local import graphql, start_dagster, wait_ready
from telemetry_core.config import load_config
from telemetry_core.store import open_store

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
    port = free_port()
    log = folder / "dagster.log"
    proc = start_dagster(folder / "dagster_home", port, env, log_path=log)
    try:
        if not wait_ready(port, 150, proc=proc):
            pytest.fail(f"dagster dev did not become ready:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}", env, store, log
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
    url, env, store, log = dagster_dev
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
    want = recompute(
        store, START, START + HOURS * 3600 * 10**9, load_config(env["TELEMETRY_CONFIG"])
    )
    for level in LEVELS:
        assert_rows_close(store.read_rollups(level, *FAR), want[level])
    print(f"backfill took {time.monotonic() - t0:.1f}s")

    # The backfill is the real thing: the instance knows it and its runs.
    data = graphql(
        url,
        "query { partitionBackfillsOrError(limit: 5) { __typename "
        "... on PartitionBackfills { results { id status } } } }",
    )
    results = data["partitionBackfillsOrError"]["results"]
    assert results and results[0]["status"] in ("COMPLETED", "COMPLETED_SUCCESS")


def test_site_scoped_backfill_rewrites_only_that_site(dagster_dev):
    url, env, store, _ = dagster_dev
    before_b = store.read_rollups("15m", *FAR, site_id="site-b").rows()
    store.write_points(fleet_points(START, HOURS, seed=99))  # new values for both sites
    # Those writes marked the windows late; the running late-data sensor would rightly
    # recompute every site. Clear the marks: this test is about the --site scope.
    marks = store.late_windows(1000)
    store.clear_late_windows([(m.window_start, m.site_id) for m in marks], 2**62)
    out = telemetry(
        "backfill",
        "--start", "2026-11-20T06:00:00Z",
        "--end", "2026-11-20T07:00:00Z",
        "--site", "site-a",
        "--assets", "rollup_15m",
        "--url", url,
        "--poll", "1",
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert store.read_rollups("15m", *FAR, site_id="site-b").rows() == before_b
    want = recompute(store, START, START + 3600 * 10**9, load_config(env["TELEMETRY_CONFIG"]))[
        "15m"
    ]
    assert_rows_close(
        store.read_rollups("15m", START, START + 3600 * 10**9, site_id="site-a"),
        want.filter(want["site_id"] == "site-a"),
    )


def test_unknown_asset_and_bad_range_are_one_line_errors(dagster_dev):
    url, env, _, _ = dagster_dev
    out = telemetry(
        "backfill", "--start", "2025-01-01", "--end", "2025-02-01", "--url", url, env=env
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "first partition" in out.stderr
    assert "Traceback" not in out.stderr
