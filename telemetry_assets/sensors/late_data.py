"""Late data: turn the daemon's late-window marks into re-materialisations.

The ingest daemon marks a (15-minute window, site) whenever it stores a point whose window
was already rolled up or ended more than the grace period ago. This sensor works through
the marks newest window first, in bounded batches, with no age limit:

1. take up to ``BATCH_MARKS`` marks; request one ``rollup_15m_job`` run per marked window
   (device, site and portfolio 15-minute rollups of exactly that partition);
2. once all of them succeeded, request one ``rollup_1h_job`` run per hour they touch;
3. once those succeeded, clear the marks — only those not touched again since the batch
   was read (a point landing meanwhile leaves its mark for the next batch).

A failed run abandons the batch without clearing anything, so its marks are retried.
The whole state is the JSON cursor; run keys carry a unique batch id.
"""

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import dagster as dg

from telemetry_assets.jobs import rollup_1h_job, rollup_15m_job
from telemetry_assets.names import (
    LATE_BATCH_TAG,
    LATE_POINTS_TAG,
    PARTITION_TAG,
    STAGE_TAG,
    WILL_RETRY_TAG,
)
from telemetry_assets.resources import TelemetryStore
from telemetry_core.store.base import Store
from telemetry_core.windows import HOUR_NS, partition_key, window_start

BATCH_MARKS = 64  # (window, site) marks per batch: one tick stays far below the 60 s limit
STALE_AFTER_NS = 3600 * 1_000_000_000  # runs never showed up: give the batch up, retry
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class Batch:
    id: str
    stage: str  # "15m" then "1h"
    marks: list[tuple[int, str, int]]  # (window_start, site_id, points)
    up_to: int  # newest last_marked_at among the marks read
    expected: int  # runs requested for the current stage
    since: int  # when the current stage was requested

    def windows(self) -> list[int]:
        return sorted({ws for ws, _, _ in self.marks}, reverse=True)

    def hours(self) -> list[int]:
        return sorted({window_start(ws, HOUR_NS) for ws, _, _ in self.marks}, reverse=True)

    def points_in(self, start: int, width: int) -> int:
        return sum(p for ws, _, p in self.marks if start <= ws < start + width)


@dataclass
class LateState:
    batch: Batch | None = None
    batches_done: int = 0
    marks_cleared: int = 0
    history: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, cursor: str | None) -> "LateState":
        if not cursor:
            return cls()
        data = json.loads(cursor)
        raw = data.get("batch")
        batch = None
        if raw:
            raw["marks"] = [tuple(m) for m in raw["marks"]]
            batch = Batch(**raw)
        return cls(batch, data.get("batches_done", 0), data.get("marks_cleared", 0))

    def dump(self) -> str:
        return json.dumps(
            {
                "batch": asdict(self.batch) if self.batch else None,
                "batches_done": self.batches_done,
                "marks_cleared": self.marks_cleared,
            }
        )


def _requests(batch: Batch, stage: str) -> list[dg.RunRequest]:
    """One run per marked window ("15m") or per hour the marks touch ("1h")."""
    job, width, starts = (
        (rollup_15m_job, HOUR_NS // 4, batch.windows())
        if stage == "15m"
        else (rollup_1h_job, HOUR_NS, batch.hours())
    )
    return [
        dg.RunRequest(
            run_key=f"{batch.id}:{stage}:{partition_key(start)}",
            job_name=job.name,
            partition_key=partition_key(start),
            tags={
                LATE_BATCH_TAG: batch.id,
                STAGE_TAG: stage,
                LATE_POINTS_TAG: str(batch.points_in(start, width)),
            },
        )
        for start in starts
    ]


def evaluate(
    state: LateState,
    store: Store,
    run_statuses: Callable[[str, str], Iterable[dg.DagsterRunStatus]],
    *,
    first_ns: int,
    now_ns: int | None = None,
    batch_marks: int = BATCH_MARKS,
) -> tuple[list[dg.RunRequest], str]:
    """One tick: advance the current batch, or start the next one. Mutates ``state``.
    ``first_ns`` is the first partition's start (``[rollups] start``)."""
    now = time.time_ns() if now_ns is None else now_ns
    batch = state.batch
    if batch is not None:
        statuses = list(run_statuses(batch.id, batch.stage))
        if any(s in FAILED for s in statuses):
            state.batch = None
            return [], f"batch {batch.id}: a {batch.stage} run failed; its marks stay for a retry"
        done = sum(s == dg.DagsterRunStatus.SUCCESS for s in statuses)
        if done < batch.expected:
            if not statuses and now - batch.since > STALE_AFTER_NS:
                state.batch = None
                return [], f"batch {batch.id}: runs never started; its marks stay for a retry"
            return [], f"batch {batch.id}: {done}/{batch.expected} {batch.stage} runs done"
        if batch.stage == "15m":
            requests = _requests(batch, "1h")
            batch.stage, batch.expected, batch.since = "1h", len(requests), now
            return requests, f"batch {batch.id}: 15-minute runs done, {len(requests)} hourly"
        cleared = store.clear_late_windows([(ws, site) for ws, site, _ in batch.marks], batch.up_to)
        state.batch = None
        state.batches_done += 1
        state.marks_cleared += cleared
        message = f"batch {batch.id}: done, cleared {cleared} of {len(batch.marks)} marks. "
    else:
        message = ""
    marks = store.late_windows(batch_marks)
    too_old = [(m.window_start, m.site_id) for m in marks if m.window_start < first_ns]
    if too_old:  # before the first partition: nothing can be rolled up there
        store.clear_late_windows(too_old, max(m.last_marked_at for m in marks))
    # A window still open is no partition yet; its mark waits until the window has ended.
    marks = [m for m in marks if first_ns <= m.window_start <= now - HOUR_NS // 4]
    if not marks:
        return [], message + "no late windows"
    batch = Batch(
        id=f"late-{now:x}",
        stage="15m",
        marks=[(m.window_start, m.site_id, m.points) for m in marks],
        up_to=max(m.last_marked_at for m in marks),
        expected=0,
        since=now,
    )
    requests = _requests(batch, "15m")
    batch.expected = len(requests)
    state.batch = batch
    return requests, message + f"batch {batch.id}: {len(marks)} marks, {len(requests)} windows"


def _statuses(instance: dg.DagsterInstance) -> Callable[[str, str], list[dg.DagsterRunStatus]]:
    """The status of the newest run per partition of a batch stage. A failed run that
    Dagster's run retries will re-launch counts as still running, so a retry that
    succeeds completes the batch instead of abandoning it."""

    def lookup(batch_id: str, stage: str) -> list[dg.DagsterRunStatus]:
        runs = instance.get_runs(
            filters=dg.RunsFilter(tags={LATE_BATCH_TAG: batch_id, STAGE_TAG: stage})
        )  # newest first
        latest: dict[str, dg.DagsterRun] = {}
        for run in runs:
            latest.setdefault(run.tags.get(PARTITION_TAG, run.run_id), run)
        return [
            dg.DagsterRunStatus.STARTED
            if r.status == dg.DagsterRunStatus.FAILURE and r.tags.get(WILL_RETRY_TAG) == "true"
            else r.status
            for r in latest.values()
        ]

    return lookup


def build_late_data_sensor(first_ns: int) -> dg.SensorDefinition:
    """The sensor for partitions starting at ``first_ns``: marks of earlier windows can
    never be rolled up, so they are cleared instead of retried forever."""

    @dg.sensor(
        name="late_data_sensor",
        jobs=[rollup_15m_job, rollup_1h_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Re-materialise exactly the 15-minute windows the ingest daemon marked "
        f"late (newest first, at most {BATCH_MARKS} marks a batch), then their hours, then "
        "clear the marks.",
    )
    def late_data_sensor(context: dg.SensorEvaluationContext, store: TelemetryStore):
        state = LateState.load(context.cursor)
        with store.open() as s:
            requests, message = evaluate(state, s, _statuses(context.instance), first_ns=first_ns)
        context.log.info(message)
        return dg.SensorResult(
            run_requests=requests,
            cursor=state.dump(),
            skip_reason=None if requests else dg.SkipReason(message),
        )

    return late_data_sensor
