"""``telemetry query``: raw points or rollups, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

HELP = """Show what the store holds. Times are RFC 3339 (2026-11-20T07:00:00Z), a date, 'now', or
relative (-8h, -30m, -2d). Windows are half-open [start, end) and labelled by their start.

--resolution auto picks raw points for ranges up to 2 hours, 15-minute rollups up to 3 days
and hourly rollups beyond (raw has no site or portfolio scope, so a wider scope picks
rollups). Site and portfolio rows are combined from device rollups with the same maths the
Dagster assets use: first/last follow the earliest/latest reading.

--format json prints one JSON array: raw rows have time, measurement, site_id, device_id,
field, value; rollup rows have window_start, window_end, measurement, site_id, device_id
(device scope only), field, count, sum, min, max, mean, first, last, is_work_hours (absent
for the portfolio; site_id is null there). Raw times keep every stored digit."""

RAW_KEYS = ("time", "measurement", "site_id", "device_id", "field", "value")
STATS = ("count", "sum", "min", "max", "mean", "first", "last")


def register(sub) -> None:
    p = sub.add_parser(
        "query",
        help="query raw points or rollups",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--measurement", required=True, help="e.g. energy")
    p.add_argument("--field", required=True, help="e.g. power_w")
    p.add_argument("--start", required=True, help="range start (inclusive)")
    p.add_argument("--end", default="now", help="range end (exclusive, default now)")
    p.add_argument("--site", help="only this site")
    p.add_argument("--device", help="only this device")
    p.add_argument("--resolution", choices=("auto", "raw", "15m", "1h"), default="auto")
    p.add_argument("--scope", choices=("device", "site", "portfolio"), default="device")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--store-url", help="store URL (default $TELEMETRY_STORE_URL)")
    p.add_argument("--config", help="TOML config (default $TELEMETRY_CONFIG): site work hours")
    p.set_defaults(func=run)


def pick_resolution(resolution: str, scope: str, span_ns: int) -> str:
    if resolution != "auto":
        return resolution
    hour = 3600 * 10**9
    if span_ns <= 2 * hour and scope == "device":
        return "raw"
    return "15m" if span_ns <= 72 * hour else "1h"


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.identifiers import check_field, check_name
    from telemetry_core.timeutil import now_ns, parse_time_arg

    check_name(args.measurement, "measurement")
    check_field(args.field)
    if args.site:
        check_name(args.site, "site")
    if args.device:
        check_name(args.device, "device")
    now = now_ns()
    start, end = parse_time_arg(args.start, now=now), parse_time_arg(args.end, now=now)
    if end <= start:
        raise CliError("--end must be after --start")
    resolution = pick_resolution(args.resolution, args.scope, end - start)
    if resolution == "raw" and args.scope != "device":
        raise CliError("raw points have no site or portfolio scope: use --resolution 15m or 1h")
    if args.device and args.scope != "device":
        raise CliError("--device only applies at --scope device")
    rows = fetch(args, start, end, resolution)
    emit(rows, args.format, RAW_KEYS if resolution == "raw" else None)
    return 0


def fetch(args: argparse.Namespace, start: int, end: int, resolution: str) -> list[dict[str, Any]]:
    from telemetry_core.store import open_store
    from telemetry_core.timeutil import format_rfc3339

    store = open_store(args.store_url)
    try:
        filters = {"measurement": args.measurement, "field": args.field, "site_id": args.site}
        if resolution == "raw":
            frame = store.read_points(start, end, device_id=args.device, **filters)
            return [
                {**row, "time": format_rfc3339(row["time"])}
                for row in frame.select(RAW_KEYS).iter_rows(named=True)
            ]
        return rollup_rows(store, args, start, end, resolution, filters)
    finally:
        store.close()


def rollup_rows(
    store, args, start: int, end: int, resolution: str, filters
) -> list[dict[str, Any]]:
    from telemetry_core.config import load_config
    from telemetry_core.rollup import combine, with_mean, with_work_hours
    from telemetry_core.timeutil import format_rfc3339
    from telemetry_core.windows import RESOLUTIONS_NS, window_start

    width = RESOLUTIONS_NS[resolution]
    first = window_start(start, width)
    frame = store.read_rollups(resolution, first, end, device_id=args.device, **filters)
    if args.scope != "device":
        frame = combine(frame.drop("is_work_hours"), width, args.scope)
        frame = with_work_hours(frame, load_config(args.config), args.scope)
    frame = with_mean(frame)
    rows = []
    for r in frame.iter_rows(named=True):
        out: dict[str, Any] = {
            "window_start": format_rfc3339(r["window_start"]),
            "window_end": format_rfc3339(r["window_start"] + width),
            "measurement": r["measurement"],
            "site_id": None if args.scope == "portfolio" else r["site_id"],
        }
        if args.scope == "device":
            out["device_id"] = r["device_id"]
        out["field"] = r["field"]
        out.update({k: r[k] for k in STATS})
        if args.scope != "portfolio":
            out["is_work_hours"] = r["is_work_hours"]
        rows.append(out)
    return rows


def emit(rows: list[dict[str, Any]], fmt: str, keys: tuple[str, ...] | None) -> None:
    out = sys.stdout
    if fmt == "json":
        json.dump(rows, out)
        out.write("\n")
        return
    columns = list(keys or (rows[0].keys() if rows else ("window_start", "window_end", *STATS)))
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
    print(f"({len(rows)} rows)", file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
