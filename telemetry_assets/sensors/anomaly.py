"""``anomaly_sensor``: every ``rollup_15m`` materialisation is evaluated by exactly one
``anomaly_job`` run.

How "one run per materialisation" holds:

* The cursor is the storage id of the last materialisation event handed to a run. A tick
  reads the events after it in storage-id order (at most ``FETCH_LIMIT``), so each event
  is read by one tick, and re-materialisations (late data, a re-run, a backfill over old
  windows) are new events, hence new evaluations.
* Events are grouped by the run that wrote them and cut into chunks of at most
  ``max_windows`` windows; each chunk is one run request. A backfill run that wrote 672
  partitions becomes 7 anomaly runs, not 672; a scheduled run's single partition, one.
* Run keys come from the events (``anomaly:<first storage id of the chunk>``), so a tick
  that Dagster evaluates again with the same cursor requests the same keys, and the
  instance drops the repeats.
* Only events older than ``settle_seconds`` are taken, and a tick stops at the first one
  that is not: with several run workers writing at once (PostgreSQL hands out ids before
  the rows commit), an event with a lower id can become visible after a higher one, and a
  cursor that had already passed it would miss it.

Ticks stay small: one indexed query and no store access, far below the 60 s tick limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg

from telemetry_assets.jobs.anomaly import OP_NAME, anomaly_job
from telemetry_assets.names import FIRST_TAG, LAST_TAG, SOURCE_RUN_TAG, WINDOWS_TAG
from telemetry_core.config import Config

ROLLUP_15M = dg.AssetKey("rollup_15m")
FETCH_LIMIT = 1000  # events read per tick
MAX_WINDOWS_PER_RUN = 96  # one day of windows: a run of a few minutes at most
SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class Materialised:
    storage_id: int
    run_id: str
    partition_key: str | None  # None: not a partition's (cannot happen for rollup_15m)
    timestamp: float


def settled(
    events: Iterable[Materialised], now: float, settle_seconds: float
) -> list[Materialised]:
    """The events up to (not including) the first one younger than ``settle_seconds``."""
    out = []
    for event in events:
        if event.timestamp > now - settle_seconds:
            break
        out.append(event)
    return out


def plan_runs(events: Sequence[Materialised], max_windows: int) -> list[dg.RunRequest]:
    """One request per chunk of at most ``max_windows`` windows of one writing run."""
    by_run: dict[str, list[Materialised]] = {}
    for event in events:
        if event.partition_key is not None:
            by_run.setdefault(event.run_id, []).append(event)
    requests = []
    for run_id, group in by_run.items():
        chunk: list[Materialised] = []
        keys: set[str] = set()
        for event in group:
            assert event.partition_key is not None
            if event.partition_key not in keys and len(keys) >= max_windows:
                requests.append(_request(run_id, chunk, keys))
                chunk, keys = [], set()
            chunk.append(event)
            keys.add(event.partition_key)
        if chunk:
            requests.append(_request(run_id, chunk, keys))
    return requests


def _request(run_id: str, chunk: list[Materialised], keys: set[str]) -> dg.RunRequest:
    windows = sorted(keys)
    return dg.RunRequest(
        run_key=f"anomaly:{chunk[0].storage_id}",
        run_config={"ops": {OP_NAME: {"config": {"windows": windows}}}},
        tags={
            SOURCE_RUN_TAG: run_id,
            FIRST_TAG: windows[0],
            LAST_TAG: windows[-1],
            WINDOWS_TAG: str(len(windows)),
        },
    )


def fetch(instance: dg.DagsterInstance, after: int | None, limit: int) -> list[Materialised]:
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ROLLUP_15M, after_storage_id=after),
        limit=limit,
        ascending=True,
    )
    return [
        Materialised(r.storage_id, r.run_id, r.partition_key, r.timestamp) for r in result.records
    ]


def build_anomaly_sensor(
    config: Config,
    *,
    settle_seconds: float = SETTLE_SECONDS,
    max_windows: int = MAX_WINDOWS_PER_RUN,
    minimum_interval_seconds: int = 15,
) -> dg.SensorDefinition:
    """The sensor for ``config``: with no ``[[anomalies]]`` rules it moves its cursor on
    without starting runs (there is nothing to evaluate)."""
    has_rules = bool(config.anomalies)

    @dg.sensor(
        name="anomaly_sensor",
        job=anomaly_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Start anomaly_job for every rollup_15m materialisation (scheduled, "
        f"late-data and backfill runs alike), at most {max_windows} windows a run, one run "
        "per materialisation (run keys from the event storage ids).",
    )
    def anomaly_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor) if context.cursor else None
        events = settled(fetch(context.instance, after, FETCH_LIMIT), time.time(), settle_seconds)
        if not events:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new rollup_15m materialisations"))
        cursor = str(events[-1].storage_id)
        if not has_rules:
            return dg.SensorResult(
                cursor=cursor,
                skip_reason=dg.SkipReason(
                    f"no [[anomalies]] rules configured: {len(events)} materialisations passed over"
                ),
            )
        requests = plan_runs(events, max_windows)
        if not requests:
            return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason("no partitions"))
        context.log.info(
            f"{len(events)} rollup_15m materialisations -> {len(requests)} anomaly_job runs"
        )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return anomaly_sensor
