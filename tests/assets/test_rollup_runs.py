"""Range runs, re-runs and site-scoped runs."""

from __future__ import annotations

import pytest

from telemetry_assets.names import SITE_TAG
from telemetry_core.config import load_config
from telemetry_core.windows import WINDOW_15M_NS, partition_key
from tests.assets.rollup_helpers import (
    FAR,
    LEVELS,
    assert_rows_close,
    failure_message,
    fleet_points,
    ns,
    recompute,
    run_all,
    run_job,
    snapshot,
)

START = ns("2026-11-20T06:00:00Z")
HOURS = 3
RANGE = dict(
    q_start="2026-11-20-06:00",
    q_end="2026-11-20-08:45",
    h_start="2026-11-20-06:00",
    h_end="2026-11-20-08:00",
)


def clear_all(store) -> None:
    empty = store.read_rollups("15m", 0, 0)
    for level in LEVELS:  # only the test's hours: every replaced window is recorded
        store.replace_rollups(level, START, START + HOURS * 3600 * 10**9, empty)


def test_range_run_equals_one_run_per_partition(defs, instance, store):
    store.write_points(fleet_points(START, HOURS))
    for i in range(HOURS * 4):
        run_job(defs, "rollup_15m_job", instance, key=partition_key(START + i * WINDOW_15M_NS))
    for h in range(HOURS):
        run_job(defs, "rollup_1h_job", instance, key=partition_key(START + h * 4 * WINDOW_15M_NS))
    per_partition = snapshot(store)
    assert all(per_partition[level] for level in LEVELS)

    clear_all(store)
    assert not any(snapshot(store).values())
    run_all(defs, instance, **RANGE)
    assert snapshot(store) == per_partition


def test_rollups_equal_recomputation_and_rerun_is_a_no_op(defs, instance, store, env):
    store.write_points(fleet_points(START, HOURS))
    run_all(defs, instance, **RANGE)
    first = snapshot(store)
    want = recompute(store, START, START + HOURS * 3600 * 10**9, load_config())
    for level in LEVELS:
        assert_rows_close(store.read_rollups(level, *FAR), want[level])

    run_all(defs, instance, **RANGE)
    assert snapshot(store) == first


def test_site_scoped_run_leaves_other_sites_untouched(defs, instance, store, env):
    store.write_points(fleet_points(START, HOURS, seed=1))
    run_all(defs, instance, **RANGE)
    before = snapshot(store)

    # New values for both sites (same identities: the writes replace the old values).
    store.write_points(fleet_points(START, HOURS, seed=2))
    run_all(defs, instance, **RANGE, tags={SITE_TAG: "site-a"})
    after = snapshot(store)
    want = recompute(store, START, START + HOURS * 3600 * 10**9, load_config())

    for level in ("15m", "site_15m", "1h", "site_1h"):
        a_rows = [r for r in after[level] if r[2] == "site-a"]
        b_rows = [r for r in after[level] if r[2] == "site-b"]
        # site-b: exactly the rows from before, though its raw values changed.
        assert b_rows == [r for r in before[level] if r[2] == "site-b"]
        # site-a: rewritten from the new raw values.
        assert a_rows != [r for r in before[level] if r[2] == "site-a"]
        assert_rows_close(
            store.read_rollups(level, *FAR, site_id="site-a"),
            want[level].filter(want[level]["site_id"] == "site-a"),
        )
    # The portfolio is recomputed whole from the (partly stale) site rows.
    from telemetry_core.rollup import combine, with_work_hours
    from telemetry_core.windows import HOUR_NS

    sites = store.read_rollups("site_1h", *FAR)
    assert_rows_close(
        store.read_rollups("portfolio_1h", *FAR),
        with_work_hours(combine(sites, HOUR_NS, "portfolio"), load_config(), "portfolio"),
    )


def test_bad_site_tag_fails_the_run(defs, instance, store):
    """The run fails because of the tag (named in the error), before writing anything."""
    store.write_points(fleet_points(START, 1))
    result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
        instance=instance,
        partition_key="2026-11-20-06:00",
        tags={SITE_TAG: "site-a; DROP TABLE raw"},
        raise_on_error=False,
    )
    assert not result.success
    message = failure_message(result)
    assert "run tag telemetry/site" in message and "site id" in message, message
    assert store.rolled_up_windows("15m", *FAR) == []
    assert store.read_rollups("15m", *FAR).height == 0


def test_a_config_mistake_fails_the_run_in_one_line(defs, instance, store, tmp_path, monkeypatch):
    """A typo in the TOML file (read when the run starts) fails the run with the error that
    names the key, not a traceback; nothing is written."""
    bad = tmp_path / "typo.toml"
    bad.write_text("[rollups]\ngrace_secs = 60\n")
    monkeypatch.setenv("TELEMETRY_CONFIG", str(bad))
    store.write_points(fleet_points(START, 1))
    result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
        instance=instance, partition_key="2026-11-20-06:00", raise_on_error=False
    )
    assert not result.success
    message = failure_message(result)
    assert "grace_secs" in message and "Traceback" not in message, message
    assert len(message.splitlines()) == 1, message
    assert store.read_rollups("15m", *FAR).height == 0


@pytest.mark.parametrize("level", ["15m", "1h"])
def test_rolled_up_windows_recorded(defs, instance, store, level):
    store.write_points(fleet_points(START, 1))
    run_all(
        defs,
        instance,
        q_start="2026-11-20-06:00",
        q_end="2026-11-20-06:45",
        h_start="2026-11-20-06:00",
        h_end="2026-11-20-06:00",
    )
    windows = store.rolled_up_windows(level, *FAR)
    expected = 4 if level == "15m" else 1
    assert [ws for ws, _ in windows] == sorted(ws for ws, _ in windows)
    assert len(windows) == expected
