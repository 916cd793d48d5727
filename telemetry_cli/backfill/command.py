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

DEFAULT_URL = "http://127.0.0.1:3000"


def register(sub) -> None:
    from telemetry_cli.backfill.launch import asset_grains

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


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.backfill.launch import (
        asset_grains,
        backfill_params,
        first_partition,
        launch,
        partition_ranges,
    )
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

    backfill_id = launch(url, params)
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
    partition key), it ends as soon as the data is complete (``progress.data_complete``)."""
    from telemetry_cli.backfill.launch import asset_grains
    from telemetry_cli.backfill.progress import (
        DONE_BAD,
        DONE_OK,
        all_done,
        data_complete,
        fetch,
        partitions_in,
        summarize,
    )
    from telemetry_cli.errors import CliError

    last = None
    tty = sys.stdout.isatty()
    try:
        while True:
            data = fetch(url, backfill_id)
            if data["__typename"] != "PartitionBackfill":
                raise CliError(f"backfill {backfill_id}: {data.get('message', data['__typename'])}")
            status, targeted, done, running, failed = summarize(data)
            complete = bool(targets) and not failed and data_complete(data, targets or {})
            if complete and targets:  # the daemon's counts lag behind the runs until its next pass
                targeted = sum(partitions_in(t, asset_grains()[a]) for a, t in targets.items())
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
