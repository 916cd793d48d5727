"""``telemetry backfill``: launch a real Dagster backfill for a time range, show progress.

The backfill goes through the webserver's GraphQL API (``launchPartitionBackfill``), so it
is the same object the UI creates: visible under Overview → Backfills, run by the daemon
in chunks (each asset's backfill policy), cancellable from the UI.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HELP = """Launch a Dagster backfill of the rollups for [--start, --end) and follow it until it
ends. Times are RFC 3339 (2026-11-20T07:00:00Z), a date, 'now' or relative (-8h, -2d).
Every 15-minute and hourly window overlapping the range is recomputed, up to the last
complete window. With --site, only that site's device and site rows are rewritten (the
portfolio is recomputed whole). Needs a running Dagster webserver and daemon
(`dagster dev`, or `telemetry demo`). Exit status: 0 when every run succeeded, 1 when the
backfill failed or was canceled, 2 on bad input or an unreachable webserver."""

SITE_TAG = "telemetry/site"
DEFAULT_URL = "http://127.0.0.1:3000"
DONE_OK = {"COMPLETED", "COMPLETED_SUCCESS"}
DONE_BAD = {"FAILED", "COMPLETED_FAILED", "CANCELED"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
    ... on RunConflict { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""

FIRST_PARTITION = """
query First($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionKeysByDimension(startIdx: 0, endIdx: 1) { partitionKeys } }
  }
}
"""

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


def asset_grains() -> dict[str, str]:
    """Rollup asset -> partition grain (``15m`` or ``1h``), from the one spec table."""
    from telemetry_core.rollup import ROLLUP_SPECS

    return {spec.asset: spec.grain for spec in ROLLUP_SPECS}


def register(sub) -> None:
    assets = list(asset_grains())
    p = sub.add_parser(
        "backfill",
        help="launch a Dagster backfill for a time range and show its progress",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--start", required=True, help="range start (inclusive)")
    p.add_argument("--end", required=True, help="range end (exclusive)")
    p.add_argument("--site", help="rewrite only this site's rows")
    p.add_argument(
        "--url",
        default=None,
        help=f"Dagster webserver (default $TELEMETRY_DAGSTER_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--assets",
        nargs="+",
        choices=assets,
        metavar="ASSET",
        help=f"only these rollup assets (default: all {len(assets)}: {', '.join(assets)})",
    )
    p.add_argument("--no-wait", action="store_true", help="launch and exit")
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def partition_ranges(
    start_ns: int, end_ns: int, now: int, first_partition: int
) -> dict[str, tuple[str, str] | None]:
    """First and last partition key per grain overlapping ``[start, end)``, from the first
    partition (the code location's ``[rollups] start``) up to the last complete window (the
    current one is not a partition yet)."""
    from telemetry_cli.errors import CliError
    from telemetry_core.timeutil import format_rfc3339
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, partition_key, window_start

    if end_ns <= start_ns:
        raise CliError("--end must be after --start")
    if end_ns <= first_partition:
        raise CliError(
            f"the range ends before the first partition ({format_rfc3339(first_partition)})"
        )
    start_ns = max(start_ns, first_partition)
    out: dict[str, tuple[str, str] | None] = {}
    for grain, width in (("15m", WINDOW_15M_NS), ("1h", HOUR_NS)):
        first = window_start(start_ns, width)
        last = min(window_start(end_ns - 1, width), window_start(now, width) - width)
        out[grain] = (partition_key(first), partition_key(last)) if last >= first else None
    if out["15m"] is None:
        raise CliError("the range holds no complete 15-minute window yet")
    return out


def backfill_params(
    ranges: dict[str, tuple[str, str] | None], assets: list[str], site: str | None, title: str
) -> dict:
    grains = asset_grains()
    selectors = []
    for asset in assets:
        grain_range = ranges[grains[asset]]
        if grain_range is None:
            continue
        start, end = grain_range
        selectors.append(
            {"assetKey": {"path": [asset]}, "partitions": {"range": {"start": start, "end": end}}}
        )
    params: dict = {"partitionsByAssets": selectors, "title": title}
    if site:
        params["tags"] = [{"key": SITE_TAG, "value": site}]
    return params


def _call(url: str, query: str, variables: dict) -> dict:
    from telemetry_cli.dagster_local import graphql
    from telemetry_cli.errors import CliError

    try:
        return graphql(url, query, variables)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot reach the Dagster webserver at {url} ({reason}); start it with "
            "`dagster dev` or `telemetry demo`, or set --url / TELEMETRY_DAGSTER_URL"
        ) from None
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CliError(f"the Dagster webserver at {url} refused the request: {first}") from None


def first_partition(url: str) -> int:
    """Where the running code location's partitions start (its ``[rollups] start``): asked
    from the webserver, so a CLI with another config cannot disagree with it."""
    from telemetry_cli.errors import CliError
    from telemetry_core.rollup import ROLLUP_SPECS
    from telemetry_core.windows import parse_partition_key

    asset = ROLLUP_SPECS[0].asset
    node = _call(url, FIRST_PARTITION, {"key": {"path": [asset]}})["assetNodeOrError"]
    dims = node.get("partitionKeysByDimension") or []
    keys = dims[0].get("partitionKeys") if dims else None
    if node["__typename"] != "AssetNode" or not keys:
        raise CliError(
            f"the Dagster webserver at {url} has no partitioned asset {asset}: "
            "is it running the telemetry code location (telemetry_assets.definitions)?"
        )
    return parse_partition_key(keys[0])


def all_done(backfill: dict) -> bool:
    """Every targeted partition materialised and no run left: the data is complete even
    before the daemon's next pass (up to 30 s later) marks the backfill COMPLETED."""
    _, targeted, done, running, failed = summarize(backfill)
    unfinished = backfill.get("unfinishedRuns")
    return bool(targeted) and done == targeted and not running and not failed and unfinished == []


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"


def data_complete(backfill: dict, targets: dict[str, tuple[str, str]]) -> bool:
    """Every targeted partition of every targeted asset lies in the range of a *succeeded*
    run of this backfill that selected the asset: the rows are in the store and Dagster
    recorded the materialisations.

    Read from the runs themselves, because the backfill's own counts and status are only
    updated by the backfill daemon's next pass (every 30 s, a Dagster constant): waiting for
    it would add up to 30 s to every backfill for bookkeeping alone."""
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, parse_partition_key

    width = {"15m": WINDOW_15M_NS, "1h": HOUR_NS}
    grains = asset_grains()
    missing: dict[str, set[int]] = {}
    for asset, (first, last) in targets.items():
        step = width[grains[asset]]
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


def summarize(backfill: dict) -> tuple[str, int, int, int, int]:
    statuses = (backfill.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
    targeted = done = running = failed = 0
    for s in statuses:
        targeted += s.get("numPartitionsTargeted", 0)
        done += s.get("numPartitionsMaterialized", 0)
        running += s.get("numPartitionsInProgress", 0)
        failed += s.get("numPartitionsFailed", 0)
    return backfill["status"], targeted, done, running, failed


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.identifiers import check_name
    from telemetry_core.timeutil import now_ns, parse_time_arg

    url = (args.url or os.environ.get("TELEMETRY_DAGSTER_URL") or DEFAULT_URL).rstrip("/")
    site = check_name(args.site, "site id") if args.site else None
    now = now_ns()
    start_ns = parse_time_arg(args.start, now=now)
    end_ns = parse_time_arg(args.end, now=now)
    if end_ns <= start_ns:
        raise CliError("--end must be after --start")
    ranges = partition_ranges(start_ns, end_ns, now, first_partition(url))
    assets = list(args.assets or asset_grains())
    title = f"telemetry backfill {args.start} .. {args.end}" + (f" site {site}" if site else "")
    params = backfill_params(ranges, assets, site, title)
    if not params["partitionsByAssets"]:
        raise CliError("the range holds no complete window for the selected assets")

    result = _call(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        detail = result.get("message") or result["__typename"]
        raise CliError(f"Dagster refused the backfill: {detail.strip().splitlines()[0]}")
    backfill_id = result["backfillId"]
    q, h = ranges["15m"], ranges["1h"]
    assert q is not None, "partition_ranges refuses a range without a 15-minute window"
    print(
        f"backfill {backfill_id}: 15m {q[0]}..{q[1]}"
        + (f", 1h {h[0]}..{h[1]}" if h else "")
        + (f", site {site}" if site else "")
    )
    print(f"UI: {url}/runs/b/{backfill_id}?tab=partitions")
    if args.no_wait:
        return 0
    targets = {
        sel["assetKey"]["path"][0]: (
            sel["partitions"]["range"]["start"],
            sel["partitions"]["range"]["end"],
        )
        for sel in params["partitionsByAssets"]
    }
    return follow(url, backfill_id, args.poll, targets)


def follow(
    url: str, backfill_id: str, poll: float, targets: dict[str, tuple[str, str]] | None = None
) -> int:
    """Progress lines until the backfill ends; with ``targets`` (asset -> first and last
    partition key), it ends as soon as the data is complete (:func:`data_complete`)."""
    from telemetry_cli.errors import CliError

    last = None
    tty = sys.stdout.isatty()
    try:
        while True:
            data = _call(url, PROGRESS, {"id": backfill_id})["partitionBackfillOrError"]
            if data["__typename"] != "PartitionBackfill":
                raise CliError(f"backfill {backfill_id}: {data.get('message', data['__typename'])}")
            status, targeted, done, running, failed = summarize(data)
            complete = bool(targets) and not failed and data_complete(data, targets or {})
            if complete and targets:  # the daemon's counts lag behind the runs until its next pass
                targeted = sum(_count(t, asset_grains()[a]) for a, t in targets.items())
                done, running = targeted, 0
            line = (
                f"{status.lower():<18} {done}/{targeted} asset partitions done, "
                f"{running} running, {failed} failed"
            )
            if line != last:
                print(line.ljust(78), end="\r" if tty else "\n", flush=True)
                last = line
            if complete or status in DONE_OK or status in DONE_BAD or all_done(data):
                if tty:
                    print()
                error = (data.get("error") or {}).get("message")
                if status in DONE_BAD or failed:
                    reason = f": {error.strip().splitlines()[0]}" if error else ""
                    print(f"backfill {backfill_id} {status.lower()}{reason}", file=sys.stderr)
                    return 1
                marked = (
                    ""
                    if status in DONE_OK
                    else " (data complete; Dagster marks it at its next pass)"
                )
                print(f"backfill {backfill_id} completed{marked}")
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        print(f"\nstopped following; backfill {backfill_id} continues in Dagster", file=sys.stderr)
        return 130


def _count(keys: tuple[str, str], grain: str) -> int:
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, parse_partition_key

    step = HOUR_NS if grain == "1h" else WINDOW_15M_NS
    return (parse_partition_key(keys[1]) - parse_partition_key(keys[0])) // step + 1
