"""``alert_sensor``: start ``alert_job`` whenever an outbox entry is due, one run at a time.

Each tick is one indexed query on the alerts database (``has_due``: a new event, or a
retry whose backoff has passed; entries claimed by a running delivery are not due), one
for muted firing alerts whose mute has ended (``has_released``: a silence ran out or was
expired, a maintenance window closed, an inhibiting alert resolved; their ``alert.firing``
is then due once) and one query on the run storage. It requests a run only when something is due and no
``alert_job`` run is queued or running: that run will pick up whatever became due by the
time it claims, so a second run would only queue behind it.

Latency, publish -> webhook received: the daemon persists the event within a second; the
sensor daemon evaluates sensors every 5 s (``minimum_interval_seconds`` below that only
means "every loop"); the run coordinator dequeues every ``dequeue_interval_seconds`` (1 s
in the local instance); a run worker starts in a few seconds. Requests carry a high
``dagster/priority`` so the queue hands them out before rollup runs.

Run keys number the requests (``deliver-<n>``, n from the cursor), so a tick evaluated
again with the same cursor cannot start a second run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from telemetry_assets.jobs.alerts import MAX_RUN_SECONDS, alert_job
from telemetry_assets.jobs.alerts_db import open_alerts
from telemetry_assets.names import PRIORITY_TAG
from telemetry_assets.resources import TelemetryStore
from telemetry_core.alerts import has_due, next_due
from telemetry_core.alerts.mutes import has_released
from telemetry_core.config import Config
from telemetry_core.timeutil import format_rfc3339

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# A run "in flight" for longer than this is stuck (its worker died before run monitoring
# noticed): it no longer holds back the next delivery.
STUCK_AFTER = timedelta(seconds=MAX_RUN_SECONDS + 600)
PRIORITY = "10"


def in_flight(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """``alert_job`` runs queued or running, started recently enough to be alive."""
    return list(
        instance.get_runs(
            filters=dg.RunsFilter(
                job_name=alert_job.name,
                statuses=IN_FLIGHT,
                created_after=datetime.now(UTC) - STUCK_AFTER,
            ),
            limit=1,
        )
    )


def build_alert_sensor(config: Config, *, minimum_interval_seconds: int = 1) -> dg.SensorDefinition:
    """The sensor for ``config``: with no ``[alerts]`` channel nothing can ever be due, and
    it does not even open the alerts database."""
    has_channels = bool(config.alerts.channels())

    @dg.sensor(
        name="alert_sensor",
        job=alert_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Start alert_job when an alert event is waiting in the outbox or a "
        "retry is due, unless an alert_job run is already queued or running.",
    )
    def alert_sensor(context: dg.SensorEvaluationContext, store: TelemetryStore):
        if not has_channels:
            return dg.SkipReason("no [alerts] webhooks or files configured")
        busy = in_flight(context.instance)
        if busy:
            return dg.SkipReason(f"alert_job run {busy[0].run_id} is queued or running")
        now = time.time_ns()
        with open_alerts(store) as db:
            due = has_due(db, now) or has_released(db, config.alerts, now)
            upcoming = None if due else next_due(db)
        if not due:
            when = "nothing pending" if upcoming is None else f"next at {format_rfc3339(upcoming)}"
            return dg.SkipReason(f"no outbox entry due ({when})")
        n = int(context.cursor or 0) + 1
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"deliver-{n}", tags={PRIORITY_TAG: PRIORITY})],
            cursor=str(n),
        )

    return alert_sensor
