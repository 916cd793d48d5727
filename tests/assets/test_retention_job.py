"""retention_job with real Dagster runs: what Dagster never materialised stays, a dry run
deletes nothing, a re-run deletes nothing more, hourly rollups stay, counts are in the
run's metadata; the daily schedule is on by default."""

from __future__ import annotations

import dagster as dg
import pytest

from telemetry_core.timeutil import now_ns
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS, partition_key, window_start
from tests.assets.rollup_helpers import CONFIG_TOML, FAR, fleet_points, run_job

W = WINDOW_15M_NS
# Six days ago: older than raw_days = 2 and rollup_15m_days = 3, whatever the time of day.
T0 = window_start(now_ns() - 6 * DAY_NS, DAY_NS)
HOURLY = ("1h", "site_1h", "portfolio_1h")
RETENTION_TOML = CONFIG_TOML + "\n[retention]\nraw_days = 2\nrollup_15m_days = 3\n"


@pytest.fixture
def retention_env(env, monkeypatch, tmp_path):
    path = tmp_path / "retention.toml"
    path.write_text(RETENTION_TOML)
    monkeypatch.setenv("TELEMETRY_CONFIG", str(path))
    return env


def _retention(defs, instance, *, dry_run: bool) -> dict:
    result = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"apply_retention": {"config": {"dry_run": dry_run}}}},
    )
    assert result.success
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    return {k: getattr(v, "value", v) for k, v in output.step_output_data.metadata.items()}


def _hour_keys(h: int) -> tuple[str, str]:
    start = T0 + h * HOUR_NS
    return partition_key(start), partition_key(start + HOUR_NS - W)


def test_retention_deletes_only_what_dagster_rolled_up_and_checks_pass(
    defs, instance, store, retention_env
):
    # Hours 0-2 of raw points. Hour 0: every level materialised. Hour 1: quarters only
    # (the hourly run never happened). Hour 2: never rolled up at all.
    store.write_points(fleet_points(T0, 3))
    q0, q_last = _hour_keys(0)[0], _hour_keys(1)[1]
    run_job(defs, "rollup_15m_job", instance, start=q0, end=q_last)
    run_job(defs, "rollup_1h_job", instance, key=_hour_keys(0)[0])
    raw_before = store.read_points(*FAR)
    rollups_before = {lvl: store.read_rollups(lvl, *FAR) for lvl in ("15m", *HOURLY)}

    dry = _retention(defs, instance, dry_run=True)
    assert dry["dry_run"] is True
    assert (dry["raw_windows_deleted"], dry["raw_points_deleted"]) == (0, 0)
    assert dry["raw_windows_eligible"] == 4
    hour0 = raw_before.filter(raw_before["time"] < T0 + HOUR_NS).height
    assert dry["raw_points_eligible"] == hour0 > 0
    assert dry["raw_windows_kept"] == dry["raw_windows_kept_not_materialised"] == 8
    assert dry["rollup_15m_hours_eligible"] == 1
    assert store.read_points(*FAR).equals(raw_before)
    assert store.read_rollups("15m", *FAR).equals(rollups_before["15m"])

    real = _retention(defs, instance, dry_run=False)
    assert real["dry_run"] is False
    assert (real["raw_windows_deleted"], real["raw_points_deleted"]) == (4, hour0)
    assert real["raw_windows_kept_not_materialised"] == 8
    assert real["rollup_15m_hours_deleted"] == 1
    assert (
        real["rollup_15m_rows_deleted"]
        == rollups_before["15m"].filter(rollups_before["15m"]["window_start"] < T0 + HOUR_NS).height
    )
    assert "rollup_1h" in real["kept"] and "never materialised" in real["kept"]
    left = store.read_points(*FAR)
    assert left.equals(raw_before.filter(raw_before["time"] >= T0 + HOUR_NS))
    for level in HOURLY:
        assert store.read_rollups(level, *FAR).equals(rollups_before[level]), level
    assert store.read_rollups("15m", *FAR)["window_start"].min() == T0 + HOUR_NS

    again = _retention(defs, instance, dry_run=False)
    assert (again["raw_windows_deleted"], again["raw_points_deleted"]) == (0, 0)
    assert again["rollup_15m_hours_deleted"] == 0
    assert store.read_points(*FAR).equals(left)

    # Once the hour is rolled up, its raw points go on the next run (hour 2 stays).
    run_job(defs, "rollup_1h_job", instance, key=_hour_keys(1)[0])
    later = _retention(defs, instance, dry_run=False)
    assert later["raw_windows_deleted"] == 4
    assert later["raw_windows_kept_not_materialised"] == 4
    assert store.read_points(*FAR)["time"].min() >= T0 + 2 * HOUR_NS


def test_retention_schedule_is_daily_and_running_by_default(defs):
    schedule = defs.resolve_schedule_def("retention_schedule")
    assert schedule.job_name == "retention_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "UTC"
    # its runs delete for real: the run config leaves dry_run at its default, False
    context = dg.build_schedule_context(scheduled_execution_time=None)
    request = schedule.evaluate_tick(context).run_requests[0]
    assert (
        request.run_config.get("ops", {})
        .get("apply_retention", {})
        .get("config", {})
        .get("dry_run", False)
        is False
    )


def test_rerunning_a_window_after_retention_keeps_its_rollups(defs, instance, store, retention_env):
    """Raw points and 15-minute rows deleted by retention: re-running the old partitions
    (a backfill from [rollups] start) must not replace the kept rollups with nothing."""
    store.write_points(fleet_points(T0, 1))
    q0, q_last = _hour_keys(0)
    run_job(defs, "rollup_15m_job", instance, start=q0, end=q_last)
    run_job(defs, "rollup_1h_job", instance, key=q0)
    hourly_before = {lvl: store.read_rollups(lvl, *FAR) for lvl in HOURLY}
    assert hourly_before["1h"].height > 0
    real = _retention(defs, instance, dry_run=False)
    assert real["raw_windows_deleted"] == 4 and real["rollup_15m_hours_deleted"] == 1
    assert store.read_points(*FAR).height == 0 and store.read_rollups("15m", *FAR).height == 0

    # Re-run the hour: its 15-minute source is gone, so the hourly rows must stay as they are.
    result = run_job(defs, "rollup_1h_job", instance, key=q0)
    for level in HOURLY[:1]:
        assert store.read_rollups(level, *FAR).equals(hourly_before[level]), level
    kept = [
        e.event_specific_data.materialization.metadata["windows_kept_after_retention"].value
        for e in result.all_events
        if e.is_step_materialization and e.asset_key == dg.AssetKey("rollup_1h")
    ]
    assert kept == [1]


def test_rerunning_quarters_whose_raw_points_were_deleted_keeps_them(
    defs, instance, store, env, monkeypatch, tmp_path
):
    """raw_days = 2 but rollup_15m_days = 30: the 15-minute rows outlive their raw points."""
    path = tmp_path / "keep15m.toml"
    path.write_text(CONFIG_TOML + "\n[retention]\nraw_days = 2\nrollup_15m_days = 30\n")
    monkeypatch.setenv("TELEMETRY_CONFIG", str(path))
    store.write_points(fleet_points(T0, 1))
    q0, q_last = _hour_keys(0)
    run_job(defs, "rollup_15m_job", instance, start=q0, end=q_last)
    run_job(defs, "rollup_1h_job", instance, key=q0)
    quarters = store.read_rollups("15m", *FAR)
    real = _retention(defs, instance, dry_run=False)
    assert real["raw_windows_deleted"] == 4 and store.read_points(*FAR).height == 0
    run_job(defs, "rollup_15m_job", instance, start=q0, end=q_last)
    assert store.read_rollups("15m", *FAR).equals(quarters)
