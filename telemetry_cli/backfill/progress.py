"""A backfill's progress, read from the webserver: its counts, whether it ended, and whether
its data is complete before the backfill daemon says so."""

from __future__ import annotations

from telemetry_assets.names import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

DONE_OK = {"COMPLETED", "COMPLETED_SUCCESS"}
DONE_BAD = {"FAILED", "COMPLETED_FAILED", "CANCELED"}

PROGRESS = """
query Progress($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      error { message }
      unfinishedRuns(limit: 1) { runId }
      runs { status assetSelection { path } tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""


def fetch(url: str, backfill_id: str) -> dict:
    """The backfill's ``partitionBackfillOrError``: a ``PartitionBackfill``, or the error."""
    from telemetry_cli.dagster_graphql import ask

    return ask(url, PROGRESS, {"id": backfill_id})["partitionBackfillOrError"]


def summarize(backfill: dict) -> tuple[str, int, int, int, int]:
    """(status, asset partitions targeted, materialised, in progress, failed)."""
    statuses = (backfill.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
    targeted = done = running = failed = 0
    for s in statuses:
        targeted += s.get("numPartitionsTargeted", 0)
        done += s.get("numPartitionsMaterialized", 0)
        running += s.get("numPartitionsInProgress", 0)
        failed += s.get("numPartitionsFailed", 0)
    return backfill["status"], targeted, done, running, failed


def all_done(backfill: dict) -> bool:
    """Every targeted partition materialised and no run left: the data is complete even
    before the daemon's next pass (up to 30 s later) marks the backfill COMPLETED."""
    _, targeted, done, running, failed = summarize(backfill)
    unfinished = backfill.get("unfinishedRuns")
    return bool(targeted) and done == targeted and not running and not failed and unfinished == []


def data_complete(backfill: dict, targets: dict[str, tuple[str, str]]) -> bool:
    """Every targeted partition of every targeted asset lies in the range of a *succeeded*
    run of this backfill that selected the asset: the rows are in the store and Dagster
    recorded the materialisations.

    Read from the runs themselves, because the backfill's own counts and status are only
    updated by the backfill daemon's next pass (every 30 s, a Dagster constant): waiting for
    it would add up to 30 s to every backfill for bookkeeping alone."""
    from telemetry_cli.backfill.launch import asset_grains
    from telemetry_core.windows import parse_partition_key

    grains = asset_grains()
    missing: dict[str, set[int]] = {}
    for asset, (first, last) in targets.items():
        step = grain_ns(grains[asset])
        missing[asset] = set(range(parse_partition_key(first), parse_partition_key(last) + 1, step))
    for run in backfill.get("runs") or []:
        if run.get("status") != "SUCCESS":
            continue
        tags = {t["key"]: t["value"] for t in run.get("tags") or []}
        run_first = tags.get(RANGE_START_TAG) or tags.get(PARTITION_TAG)
        run_last = tags.get(RANGE_END_TAG) or tags.get(PARTITION_TAG)
        if not run_first or not run_last:
            continue
        lo, hi = parse_partition_key(run_first), parse_partition_key(run_last)
        for key in run.get("assetSelection") or []:
            keys = missing.get("/".join(key["path"]))
            if keys:
                keys.difference_update([k for k in keys if lo <= k <= hi])
    return bool(missing) and not any(missing.values())


def partitions_in(keys: tuple[str, str], grain: str) -> int:
    """How many partitions of ``grain`` lie from the first key to the last, both included."""
    from telemetry_core.windows import parse_partition_key

    return (parse_partition_key(keys[1]) - parse_partition_key(keys[0])) // grain_ns(grain) + 1


def grain_ns(grain: str) -> int:
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

    return HOUR_NS if grain == "1h" else WINDOW_15M_NS
