"""``anomaly_job``: the ``[[anomalies]]`` rules on the 15-minute windows a sensor hands it.

``anomaly_sensor`` starts one run per batch of ``rollup_15m`` materialisations and puts
their partition keys in the run config, so a run evaluates exactly the windows that were
(re)written, whether by the schedule, the late-data sensor or a backfill. Each window is
evaluated and recorded on its own (``evaluate_window`` then ``record_anomalies``, one
transaction a window): a re-run after late data updates that window's anomalies and
alerts, never duplicates them.

Why an op job, not an asset: anomalies and alerts live in the alerts database with their
own lifecycle (a window found normal later resolves the alert an earlier run fired), not
in a partition Dagster could mark stale; what the UI needs is the run and its metadata.
"""

import time
from typing import Any

import dagster as dg
from pydantic import Field

from telemetry_assets.jobs.alerts_db import open_alerts
from telemetry_assets.names import ROLE_TAG, TSDB_POOL
from telemetry_assets.resources import TelemetryStore
from telemetry_core.alerts import evaluate_window, record_anomalies
from telemetry_core.windows import parse_partition_key, partition_key

OP_NAME = "evaluate_anomalies"


class AnomalyWindows(dg.Config):
    windows: list[str] = Field(
        description="15-minute partition keys (window starts, e.g. 2026-11-20-07:15) to "
        "evaluate, in any order; each is evaluated once, oldest first."
    )


def _window_starts(keys: list[str]) -> list[int]:
    starts = set()
    for key in keys:
        try:
            starts.add(parse_partition_key(key))
        except ValueError:
            raise dg.Failure(
                f"run config windows: {key!r} is not a 15-minute partition key (YYYY-MM-DD-HH:MM)"
            ) from None
    return sorted(starts)


class Totals:
    """Sums of the per-window figures, for the step's metadata."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.rules: dict[str, list] = {}  # rule -> [kind, series, anomalies, no_verdict]
        self.windows = 0
        self.stale = 0

    def add(self, evaluation, recorded) -> None:
        self.windows += 1
        self.stale += not recorded.notified
        for key, value in {**evaluation.metadata(), **recorded.as_metadata()}.items():
            if isinstance(value, bool):
                continue  # per-window flags: counted as windows_stale
            if key == "rules_evaluated":
                self.numbers[key] = max(self.numbers.get(key, 0), value)
            else:
                self.numbers[key] = self.numbers.get(key, 0) + value
        for r in evaluation.rules:
            row = self.rules.setdefault(r.rule, [r.kind, 0, 0, 0])
            row[1] += r.series
            row[2] += r.anomalies
            row[3] += r.no_verdict

    def metadata(self) -> dict[str, Any]:
        out: dict[str, object] = {
            "windows": self.windows,
            "windows_stale": self.stale,
            "rules_evaluated": 0,
            "series_evaluated": 0,
            "anomalies": 0,
            "no_verdict": 0,
            **self.numbers,
        }
        table = ["| rule | kind | series | anomalies | no verdict |", "|---|---|---|---|---|"]
        table += [
            f"| {rule} | {k} | {s} | {a} | {n} |" for rule, (k, s, a, n) in self.rules.items()
        ]
        out["rules"] = dg.MetadataValue.md("\n".join(table))
        return out


@dg.op(
    name=OP_NAME,
    out=dg.Out(dg.Nothing),
    pool=TSDB_POOL,
    description="Evaluate every [[anomalies]] rule on each given 15-minute window and record "
    "anomalies and alert transitions idempotently.",
)
def evaluate_anomalies(
    context: dg.OpExecutionContext, config: AnomalyWindows, store: TelemetryStore
) -> dg.Output:
    settings = store.load_config()  # a bad config fails the run in one line
    starts = _window_starts(config.windows)
    totals = Totals()
    with store.open() as s, open_alerts(store) as db:
        for ws in starts:
            evaluation = evaluate_window(s, settings, ws, time.time_ns())
            recorded = record_anomalies(db, evaluation)
            totals.add(evaluation, recorded)
            md = evaluation.metadata()
            context.log.info(
                f"window {partition_key(ws)}: {md['rules_evaluated']} rules, "
                f"{md['series_evaluated']} series, {md['anomalies']} anomalies, "
                f"{md['no_verdict']} without a verdict (e.g. too little history); "
                f"alerts fired {recorded.fired}, resolved {recorded.resolved}"
                + ("" if recorded.notified else "; stale window: recorded, nobody notified")
            )
    return dg.Output(None, metadata=totals.metadata())


@dg.job(
    name="anomaly_job",
    description="[[anomalies]] rules (zscore, silent, stuck) on the 15-minute windows "
    "anomaly_sensor hands it: anomalies recorded once per rule, series and window; "
    "anomaly alerts fired and resolved.",
    tags={ROLE_TAG: "anomalies"},
)
def anomaly_job() -> None:
    evaluate_anomalies()
