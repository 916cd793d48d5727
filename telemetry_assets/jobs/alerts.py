"""``alert_job``: send what the outbox holds, once, and leave.

``alert_sensor`` starts it when an outbox entry is due (a new event, or a retry whose time
has come). One run sends every due entry once (``deliver_due``) and records each attempt;
a failed attempt is rescheduled in the outbox with exponential backoff and the run ends.
Nothing waits inside a run: the retry is a later run, started by the sensor when
``next_due`` comes, so a receiver that is down for ten minutes costs a few short runs, not
a run sleeping for ten minutes, and nothing is lost meanwhile (the outbox is the buffer).

First it releases muted firings whose mute has ended (``release_ended``: their
``alert.firing``, once), so they go out in the same run.

Secrets are resolved when the run starts: a missing or malformed webhook secret fails the
run with the one-line configuration error naming the variable, before anything is sent.
File channels append to paths relative to the run's working directory (that of the
Dagster process launching runs).
"""

import os
from typing import Any

import dagster as dg

from telemetry_assets.jobs.alerts_db import open_alerts
from telemetry_assets.names import ROLE_TAG
from telemetry_assets.resources import TelemetryStore
from telemetry_core.alerts import deliver_due, next_due, resolve_secrets
from telemetry_core.alerts.lifecycle import release_ended
from telemetry_core.config import ConfigError
from telemetry_core.timeutil import format_rfc3339

HTTP_TIMEOUT_S = 10  # the contract: 10 s without an answer is a failed attempt
MAX_RUN_SECONDS = 120  # claiming stops after this; what is left is due for the next run


@dg.op(
    name="deliver_alerts",
    out=dg.Out(dg.Nothing),
    description="Send every due outbox entry once (signed webhooks, JSON-lines files), "
    "record each attempt, reschedule failures with backoff.",
)
def deliver_alerts(context: dg.OpExecutionContext, store: TelemetryStore) -> dg.Output:
    config = store.load_config()
    try:
        secrets = resolve_secrets(config, os.environ)
    except ConfigError as exc:
        raise dg.Failure(str(exc)) from None
    with open_alerts(store) as db:
        released = release_ended(db, config.alerts)
        counts = deliver_due(
            db, config, secrets, http_timeout=HTTP_TIMEOUT_S, max_seconds=MAX_RUN_SECONDS
        )
        upcoming = next_due(db)
    metadata: dict[str, Any] = dict(counts.as_metadata())
    metadata["released"] = released
    metadata["next_due"] = format_rfc3339(upcoming) if upcoming is not None else "nothing pending"
    context.log.info(
        f"released {released} muted firing alert(s) whose mute ended; attempted {counts.attempted}: delivered {counts.delivered}, retrying "
        f"{counts.retrying}, failed for good {counts.failed}, postponed {counts.postponed}"
    )
    return dg.Output(None, metadata=metadata)


@dg.job(
    name="alert_job",
    description="Deliver due alert events from the outbox once each (alert_sensor starts "
    "it); failures are retried by later runs with exponential backoff.",
    tags={ROLE_TAG: "alerts"},
)
def alert_job() -> None:
    deliver_alerts()
