"""Late data becomes re-materialisations of exactly the marked partitions (and their
hours), and hourly rollups follow scheduled quarters."""

from __future__ import annotations

import dagster as dg
import pytest

from telemetry_assets.names import LATE_BATCH_TAG, LATE_POINTS_TAG, SITE_TAG
from telemetry_assets.resources import TelemetryStore
from telemetry_assets.sensors import build_late_data_sensor, rollup_1h_follow_sensor
from telemetry_assets.sensors.follow import follow_requests
from telemetry_assets.sensors.late_data import BATCH_MARKS, LateState, evaluate
from telemetry_core.config import Rollups, load_config
from telemetry_core.timeutil import now_ns
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
)

START = ns("2026-11-20T06:00:00Z")
FIRST = Rollups().start_ns  # the default [rollups] start
late_data_sensor = build_late_data_sensor(FIRST)
RANGE = dict(
    q_start="2026-11-20-06:00",
    q_end="2026-11-20-07:45",
    h_start="2026-11-20-06:00",
    h_end="2026-11-20-07:00",
)


def tick(instance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor, instance=instance, resources={"store": TelemetryStore()}
    )
    return late_data_sensor(context)


def execute(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=dict(request.tags)
    )


@pytest.fixture
def rolled(defs, instance, store):
    store.write_points(fleet_points(START, 2))
    run_all(defs, instance, **RANGE)
    assert store.late_windows() == []
    return store


def test_late_point_rematerialises_exactly_its_partition_and_hour(defs, instance, rolled):
    late_t = ns("2026-11-20T06:20:00.5Z")
    result = rolled.write_points(
        [
            ("energy", "site-a", "m1", "power_w", late_t, 9999.0),
            ("energy", "site-a", "m9", "power_w", late_t, 1.0),  # a device seen late only
        ],
        late_cutoff_ns=now_ns() - 120 * 10**9,
    )
    assert result.late_windows == ((ns("2026-11-20T06:15:00Z"), "site-a"),)

    first = tick(instance, None)
    assert [(r.job_name, r.partition_key) for r in first.run_requests] == [
        ("rollup_15m_job", "2026-11-20-06:15")
    ]
    assert first.run_requests[0].tags[LATE_POINTS_TAG] == "2"
    mat = execute(defs, instance, first.run_requests[0])
    (event,) = mat.asset_materializations_for_node("rollup_15m")
    assert event.metadata["late_points"].value == 2

    waiting = tick(instance, first.cursor)  # hour requested once the quarter succeeded
    assert [(r.job_name, r.partition_key) for r in waiting.run_requests] == [
        ("rollup_1h_job", "2026-11-20-06:00")
    ]
    assert len(rolled.late_windows()) == 1  # not cleared before the hour ran
    execute(defs, instance, waiting.run_requests[0])

    done = tick(instance, waiting.cursor)
    assert not done.run_requests
    assert rolled.late_windows() == []
    assert LateState.load(done.cursor).marks_cleared == 1

    want = recompute(rolled, START, START + 2 * 3600 * 10**9, load_config())
    for level in LEVELS:
        assert_rows_close(rolled.read_rollups(level, *FAR), want[level])


def test_failed_run_keeps_the_marks(defs, instance, rolled, env, monkeypatch):
    rolled.write_points([("energy", "site-b", "m1", "power_w", ns("2026-11-20T07:31:00Z"), 5.0)])
    first = tick(instance, None)
    (request,) = first.run_requests
    monkeypatch.setenv("TELEMETRY_STORE_URL", "bogus://nowhere")  # the run fails
    failed = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=dict(request.tags),
        raise_on_error=False,
    )
    assert not failed.success
    assert "unsupported store URL 'bogus://nowhere'" in failure_message(failed)
    monkeypatch.setenv("TELEMETRY_STORE_URL", env["TELEMETRY_STORE_URL"])
    after = tick(instance, first.cursor)  # abandons the batch ...
    assert not after.run_requests
    assert len(rolled.late_windows()) == 1  # ... and keeps the mark
    retry = tick(instance, after.cursor)  # next tick retries with a new batch id
    (again,) = retry.run_requests
    assert again.partition_key == request.partition_key
    assert again.tags[LATE_BATCH_TAG] != request.tags[LATE_BATCH_TAG]


class FakeStatuses:
    def __init__(self) -> None:
        self.status = dg.DagsterRunStatus.SUCCESS

    def __call__(self, batch_id: str, stage: str):
        return [self.status] * 100


def test_batches_are_bounded_newest_first_and_keep_retouched_marks(rolled):
    windows = ["06:00", "06:15", "06:45", "07:30"]
    rolled.write_points(
        [("energy", "site-a", "m1", "power_w", ns(f"2026-11-20T{w}:01Z"), 1.0) for w in windows]
    )
    state, statuses = LateState(), FakeStatuses()
    requests, _ = evaluate(state, rolled, statuses, first_ns=FIRST, batch_marks=2)
    assert [r.partition_key for r in requests] == ["2026-11-20-07:30", "2026-11-20-06:45"]
    hours, _ = evaluate(state, rolled, statuses, first_ns=FIRST, batch_marks=2)
    assert [r.partition_key for r in hours] == ["2026-11-20-07:00", "2026-11-20-06:00"]
    # a point lands in 07:30 again while its batch runs: that mark must survive the clear
    rolled.write_points([("energy", "site-a", "m1", "power_w", ns("2026-11-20T07:30:02Z"), 2.0)])
    nxt, message = evaluate(state, rolled, statuses, first_ns=FIRST, batch_marks=2)
    assert "cleared 1 of 2" in message
    assert [r.partition_key for r in nxt] == ["2026-11-20-07:30", "2026-11-20-06:15"]


def test_sensors_are_on_by_default():
    assert late_data_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert rollup_1h_follow_sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_one_tick_takes_at_most_batch_marks_newest_first(instance, store):
    """More marks than one batch holds: the real sensor's first tick requests exactly
    BATCH_MARKS windows, the newest ones; the rest wait for later batches."""
    marked = BATCH_MARKS + 6
    windows = [START - i * WINDOW_15M_NS for i in range(marked)]  # START and earlier
    store.write_points(
        [("energy", "site-a", "m1", "power_w", w + 10**9, 1.0) for w in windows],
        late_cutoff_ns=2**62,
    )
    assert len(store.late_windows(1000)) == marked
    first = tick(instance, None)
    assert [r.partition_key for r in first.run_requests] == [
        partition_key(w) for w in windows[:BATCH_MARKS]
    ]
    assert len(store.late_windows(1000)) == marked  # nothing cleared before the runs ran


def test_follow_sensor_requests_the_hour_of_a_scheduled_quarter(defs, instance, store):
    store.write_points(fleet_points(START, 1))
    job = defs.resolve_job_def("rollup_15m_job")
    scheduled = job.execute_in_process(
        instance=instance,
        partition_key="2026-11-20-06:45",
        tags={"dagster/schedule_name": "rollup_15m_schedule", SITE_TAG: "site-b"},
    )
    run = instance.get_run_by_id(scheduled.run_id)
    (request,) = follow_requests(run)
    assert request.partition_key == "2026-11-20-06:00"
    assert request.tags == {SITE_TAG: "site-b"}

    context = dg.build_run_status_sensor_context(
        sensor_name="rollup_1h_follow_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=scheduled.get_run_success_event(),
    )
    result = rollup_1h_follow_sensor(context)
    assert [r.partition_key for r in result] == ["2026-11-20-06:00"]

    for tags in ({"dagster/backfill": "abc"}, {LATE_BATCH_TAG: "late-1"}):
        other = job.execute_in_process(
            instance=instance, partition_key="2026-11-20-06:45", tags=tags
        )
        assert follow_requests(instance.get_run_by_id(other.run_id)) == []

    hourly = defs.resolve_job_def("rollup_1h_job").execute_in_process(
        instance=instance, partition_key="2026-11-20-06:00"
    )
    assert follow_requests(instance.get_run_by_id(hourly.run_id)) == []


def test_a_run_being_retried_does_not_abandon_the_batch(defs, instance, rolled, env, monkeypatch):
    rolled.write_points([("energy", "site-a", "m2", "power_w", ns("2026-11-20T06:31:00Z"), 7.0)])
    first = tick(instance, None)
    (request,) = first.run_requests
    job = defs.resolve_job_def(request.job_name)
    monkeypatch.setenv("TELEMETRY_STORE_URL", "bogus://nowhere")  # the first attempt fails
    failed = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags={**request.tags, "dagster/will_retry": "true"},
        raise_on_error=False,
    )
    assert not failed.success
    assert "unsupported store URL 'bogus://nowhere'" in failure_message(failed)
    monkeypatch.setenv("TELEMETRY_STORE_URL", env["TELEMETRY_STORE_URL"])
    waiting = tick(instance, first.cursor)
    assert not waiting.run_requests
    assert "0/1 15m runs done" in waiting.skip_reason.skip_message
    # the retry (same tags, a newer run) succeeds: the batch moves on to the hour
    retry = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags={**request.tags, "dagster/retry_number": "1"},
    )
    assert retry.success
    hours = tick(instance, waiting.cursor)
    assert [r.partition_key for r in hours.run_requests] == ["2026-11-20-06:00"]


def test_marks_of_open_windows_wait(store):
    now = now_ns()
    store.write_points(
        [("energy", "site-a", "m1", "power_w", now, 1.0)], late_cutoff_ns=now + 3600 * 10**9
    )
    assert len(store.late_windows()) == 1  # marked (cutoff in the future), window still open
    requests, message = evaluate(LateState(), store, FakeStatuses(), first_ns=FIRST, now_ns=now)
    assert requests == [] and "no late windows" in message
    assert len(store.late_windows()) == 1  # kept for later


def test_marks_before_the_configured_start_are_cleared_not_requested(store):
    """[rollups] start bounds the sensor too: a window before the first partition can
    never be rolled up, so its mark is dropped instead of retried forever."""
    start = ns("2026-11-20T07:00:00Z")
    store.write_points(
        [
            ("energy", "site-a", "m1", "power_w", ns("2026-11-20T06:50:00Z"), 1.0),
            ("energy", "site-a", "m1", "power_w", ns("2026-11-20T07:05:00Z"), 2.0),
        ],
        late_cutoff_ns=2**62,
    )
    assert len(store.late_windows()) == 2
    requests, _ = evaluate(LateState(), store, FakeStatuses(), first_ns=start)
    assert [r.partition_key for r in requests] == ["2026-11-20-07:00"]
    assert [m.window_start for m in store.late_windows()] == [start]
    # with the default start (2026-01-01) the same 06:45 mark is a partition like any other
    store.write_points(
        [("energy", "site-a", "m1", "power_w", ns("2026-11-20T06:50:00Z"), 3.0)],
        late_cutoff_ns=2**62,
    )
    requests, _ = evaluate(LateState(), store, FakeStatuses(), first_ns=FIRST)
    assert [r.partition_key for r in requests] == ["2026-11-20-07:00", "2026-11-20-06:45"]


def test_follow_sensor_leaves_out_the_hour_still_running(defs, instance, store):
    """The running hour is no partition yet: requesting it fails every tick (Dagster's
    DagsterUnknownPartitionError). The quarter of 06:45 ends the hour; earlier ones wait."""
    from telemetry_core.timeutil import parse_rfc3339

    store.write_points(fleet_points(START, 1))
    job = defs.resolve_job_def("rollup_15m_job")
    run = instance.get_run_by_id(
        job.execute_in_process(instance=instance, partition_key="2026-11-20-06:15").run_id
    )
    assert follow_requests(run, now_ns=parse_rfc3339("2026-11-20T06:32:00Z")) == []
    (request,) = follow_requests(run, now_ns=parse_rfc3339("2026-11-20T07:02:00Z"))
    assert request.partition_key == "2026-11-20-06:00"
    ranged = instance.get_run_by_id(
        job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-11-20-05:45",
                "dagster/asset_partition_range_end": "2026-11-20-06:30",
            },
        ).run_id
    )
    (request,) = follow_requests(ranged, now_ns=parse_rfc3339("2026-11-20T06:40:00Z"))
    assert request.partition_key == "2026-11-20-05:00"  # 06:00 is still running
