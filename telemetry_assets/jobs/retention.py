"""``retention_job`` and its daily schedule: ``[retention]`` applied without losing data.

The rules and why they are safe live in :mod:`telemetry_core.retention`; this module
supplies what only Dagster knows or runs:

* ``materialised``: the partitions Dagster recorded as materialised, per rollup asset.
  Raw points that no Dagster run ever rolled up are never deleted.
* ``verify``: the rollup assets' own check functions (``telemetry_assets.checks``), run
  on the stored rows of the windows about to go, right before they go. Dagster's recorded
  check results are not used: a backfill over a range records one result with no
  partition, and an old result says nothing about rows rewritten since. A check that only
  warns (``rollup_15m_devices_complete``: a meter offline) does not block retention; every
  other failing check keeps its windows.

Why an op job and not an asset: retention changes existing partitions' data in place;
there is no new data product to materialise. What the UI needs is the run, its log and
its metadata (windows and points deleted, windows kept and why), plotted run after run.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from telemetry_assets.checks import CHECKS
from telemetry_assets.names import ROLE_TAG, TSDB_POOL
from telemetry_assets.resources import TelemetryStore
from telemetry_core.config import Config
from telemetry_core.retention import (
    RAW,
    REASONS,
    ROLLUP_15M,
    SPECS_15M,
    RetentionReport,
    Verify,
    apply_retention,
)
from telemetry_core.rollup import SPECS_BY_ASSET
from telemetry_core.store.base import Store, StoreError
from telemetry_core.timeutil import format_rfc3339, now_ns
from telemetry_core.windows import parse_partition_key

RETENTION_CRON = "30 3 * * *"  # daily, 03:30 UTC: after the night's late data settled
SHOW_KEPT = 50  # rows of the "kept" table in the metadata


class RetentionRunConfig(dg.Config):
    dry_run: bool = Field(
        default=False,
        description="Report what retention would delete (same checks, same counts in the "
        "metadata) without deleting anything.",
    )


def check_verifier(store: Store, config: Config) -> Verify:
    """Every blocking check of the rollup assets of a grain, run on ``[start, end)``;
    returns the names of those that fail."""
    by_grain: dict[str, list] = {}
    for name, (asset, _, fn) in CHECKS.items():
        by_grain.setdefault(SPECS_BY_ASSET[asset].grain, []).append((name, fn))

    def verify(grain: str, start: int, end: int) -> list[str]:
        failing = []
        for name, fn in by_grain[grain]:
            result = fn(store, config, start, end)
            if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
                failing.append(name)
        return failing

    return verify


def materialised_partitions(instance: dg.DagsterInstance):
    def materialised(asset: str) -> set[int]:
        keys = instance.get_materialized_partitions(dg.AssetKey(asset))
        return {parse_partition_key(k) for k in keys}

    return materialised


def report_metadata(report: RetentionReport) -> dict[str, Any]:
    """Numeric counts (the UI plots them run after run), cut-offs, and the kept table."""
    md: dict[str, Any] = {
        "dry_run": dg.MetadataValue.bool(report.dry_run),
        "raw_cutoff": format_rfc3339(report.raw_cutoff_ns),
        "rollup_15m_cutoff": format_rfc3339(report.rollup_15m_cutoff_ns),
        "raw_windows_deleted": report.raw_windows_deleted,
        "raw_points_deleted": report.raw_points_deleted,
        "raw_windows_eligible": report.raw_windows_eligible,
        "raw_points_eligible": report.raw_points_eligible,
    }
    for what, unit in ((RAW, "raw_windows"), (ROLLUP_15M, "rollup_15m_hours")):
        kept = report.kept_counts(what)
        md[f"{unit}_kept"] = sum(kept.values())
        for reason in REASONS:
            md[f"{unit}_kept_{reason}"] = kept.get(reason, 0)
    md["rollup_15m_hours_deleted"] = report.rollup_15m_hours_deleted
    md["rollup_15m_hours_eligible"] = report.rollup_15m_hours_eligible
    for spec in SPECS_15M:
        md[f"{spec.asset}_rows_deleted"] = report.rollup_rows_deleted.get(spec.level, 0)
        md[f"{spec.asset}_rows_eligible"] = report.rollup_rows_eligible.get(spec.level, 0)
    if report.kept:
        lines = ["| data | from | kept because | detail |", "|---|---|---|---|"]
        lines += [
            f"| {k.what} | {format_rfc3339(k.start)} | {REASONS[k.reason]} | {k.detail} |"
            for k in report.kept[:SHOW_KEPT]
        ]
        if len(report.kept) > SHOW_KEPT:
            lines.append(f"| ... | {len(report.kept) - SHOW_KEPT} more | | |")
        md["kept"] = dg.MetadataValue.md("\n".join(lines))
    return md


@dg.op(
    name="apply_retention",
    out=dg.Out(dg.Nothing),
    pool=TSDB_POOL,
    description="Delete raw points older than [retention] raw_days where every rollup of "
    "their windows is materialised and passes its checks (verified now), and 15-minute "
    "rollups older than rollup_15m_days where their hours' rollups do; hourly rollups stay.",
)
def apply_retention_op(
    context: dg.OpExecutionContext, config: RetentionRunConfig, store: TelemetryStore
) -> dg.Output:
    settings = store.load_config()  # a bad config fails the run in one line
    if not settings.retention.enabled:
        raise dg.Failure("retention is switched off ([retention] enabled = false): nothing deleted")
    with store.open() as s:
        try:
            report = apply_retention(
                s,
                settings,
                now_ns(),
                verify=check_verifier(s, settings),
                materialised=materialised_partitions(context.instance),
                dry_run=config.dry_run,
                log=context.log.info,
            )
        except StoreError as exc:  # e.g. a server that cannot delete: one line, no traceback
            raise dg.Failure(str(exc)) from None
    md = report_metadata(report)
    context.log.info(
        f"{'dry run: would delete' if report.dry_run else 'deleted'} "
        f"{report.raw_points_eligible if report.dry_run else report.raw_points_deleted} raw "
        f"points in {md['raw_windows_eligible' if report.dry_run else 'raw_windows_deleted']} "
        f"windows, kept {md['raw_windows_kept']} windows; 15-minute rollups: "
        f"{md['rollup_15m_hours_eligible' if report.dry_run else 'rollup_15m_hours_deleted']} "
        f"hours, kept {md['rollup_15m_hours_kept']}"
    )
    return dg.Output(None, metadata=md)


@dg.job(
    name="retention_job",
    description="[retention]: raw points older than raw_days, where every rollup of their "
    "windows is materialised and passes its checks; 15-minute rollups older than "
    "rollup_15m_days (hourly rollups stay). Run config dry_run: true only reports.",
    tags={ROLE_TAG: "retention"},
)
def retention_job() -> None:
    apply_retention_op()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule=RETENTION_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Apply [retention] once a day (03:30 UTC), deleting for real (dry_run false).",
)
