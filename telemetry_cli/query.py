"""``telemetry query``: raw points or rollups, as a table, CSV or JSON.

The answer comes from ``telemetry_core.series``, the code the HTTP API runs too, so the
two never disagree on the resolution ``auto`` picks or on what a row holds. Site and
portfolio rows are the *stored* ``site_*``/``portfolio_*`` rollups — the rows Dagster's
pandera and reconciliation checks validated — never a recomputation from device rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

HELP = """Show what the store holds. Times are RFC 3339 (2026-11-20T07:00:00Z), a date, 'now', or
relative (-8h, -30m, -2d). Windows are half-open [start, end) and labelled by their start.

--resolution auto picks raw points for ranges up to 1 hour, 15-minute rollups up to 7 days
and hourly rollups beyond (raw has no site or portfolio scope, so a wider scope starts at
15 minutes) — the same choice as the HTTP API. Site and portfolio rows are the stored site
and portfolio rollups Dagster wrote and checked: a window Dagster has not rolled up yet
has no row.

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
    p.add_argument("--site", help="only this site (device and site scope)")
    p.add_argument("--device", help="only this device (device scope)")
    p.add_argument("--resolution", choices=("auto", "raw", "15m", "1h"), default="auto")
    p.add_argument("--scope", choices=("device", "site", "portfolio"), default="device")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--store-url", help="store URL (default $TELEMETRY_STORE_URL)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.config import load_config
    from telemetry_core.series import QueryError, build_query, series
    from telemetry_core.store import open_store
    from telemetry_core.timeutil import now_ns, parse_time_arg

    now = now_ns()
    if parse_time_arg(args.end, now=now) <= parse_time_arg(args.start, now=now):
        raise CliError("--end must be after --start")
    try:
        q = build_query(
            measurement=args.measurement,
            field=args.field,
            start=args.start,
            end=args.end,
            site=args.site,
            device=args.device,
            scope=args.scope,
            resolution=args.resolution,
            now=now,
        )
    except QueryError as exc:
        raise CliError(f"--{exc.parameter}: {exc}") from None
    store = open_store(args.store_url)
    try:
        resolution, rows = series(store, load_config(), q)
    finally:
        store.close()
    emit(rows, args.format, RAW_KEYS if resolution == "raw" else None)
    return 0


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
