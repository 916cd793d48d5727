"""``telemetry alerts``: alerts and every delivery attempt of their notifications."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HELP = """List alerts and their notifications' delivery attempts, newest first.

An alert is identified by (rule, measurement, site_id, device_id, field). States:
  firing    the rule is breached: a threshold held for its for_seconds, or an anomaly rule
            found the window anomalous; further breaches of the same key raise nothing new
  resolved  the first in-bounds reading (threshold) or a later window evaluated normal
            (anomaly) ended it

Each transition (firing, resolved) is one event, sent to every webhook or file channel whose
min_severity the alert meets. Delivery outcomes, one entry per attempt:
  delivered   the receiver answered 2xx (status: the HTTP status)
  failed      any other answer, a refused connection or no answer in 10 s (status or error);
              retried after backoff_seconds * 2^(attempt-1), at most 300 s, until max_attempts,
              after which the delivery stays failed and visible
  pending     not attempted yet or waiting for its retry (attempt: the next attempt's number,
              at: when it is due); the alert_job sends it
  suppressed  not sent (attempt 0), with its reason: "cooldown" (the key fired again within
              cooldown_seconds of its last notification; that alert's resolution is
              suppressed too), "silence <silence_id>", "maintenance <name>" or
              "inhibited by <alert_id>" (see telemetry silence --help: when the mute ends
              and the alert still fires, its firing is delivered then)

--since keeps alerts that fired or resolved at or after T (RFC 3339 or relative, e.g. -2h).
--format json prints one array: the webhook's data keys (alert_id, rule, kind, severity, state,
measurement, site_id, device_id, field, value, started_at, resolved_at) plus deliveries, a list
of {webhook, event, attempt, at, outcome, status, error} (suppressed entries add reason). A
site-level alert (scope = "site") has device_id null.

The alerts database is TELEMETRY_ALERTS_DB when set (a path, sqlite:///path or
postgresql://user@host/db), else the store's own SQLite file (TELEMETRY_STORE_URL=sqlite:///...)
or PostgreSQL database (postgresql://...), else .state/alerts.db (a local file: past one
machine, point TELEMETRY_ALERTS_DB at PostgreSQL)."""


def register(sub) -> None:
    p = sub.add_parser(
        "alerts",
        help="list alerts and their delivery attempts",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--state", choices=("firing", "resolved", "all"), default="all")
    p.add_argument("--since", help="only alerts that fired or resolved at or after this time")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--store-url", help="store URL (default $TELEMETRY_STORE_URL)")
    p.add_argument(
        "--alerts-db", help="alerts database: a path or URL (default $TELEMETRY_ALERTS_DB)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_core.timeutil import parse_time_arg

    since = parse_time_arg(args.since) if args.since else None
    alerts = fetch(args, since)
    if args.format == "json":
        json.dump(alerts, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_table(alerts)
    return 0


def fetch(args: argparse.Namespace, since: int | None) -> list[dict[str, Any]]:
    from telemetry_cli.errors import CliError
    from telemetry_core.alerts.db import AlertsDB, alerts_db_url, is_postgres, sqlite_path
    from telemetry_core.alerts.listing import list_alerts
    from telemetry_core.store.base import StoreError, StoreUnavailable

    try:
        location = args.alerts_db or alerts_db_url(args.store_url, os.environ)
        if not is_postgres(location) and not Path(sqlite_path(location)).is_file():
            print(
                f"no alerts database at {sqlite_path(location)} yet: nothing recorded",
                file=sys.stderr,
            )
            return []
        db = AlertsDB(location, create=False)
        try:
            if not db.has_tables():
                return []
            return list_alerts(db, args.state, since)
        finally:
            db.close()
    except (StoreError, StoreUnavailable) as exc:  # a bad URL; locked or unreachable
        raise CliError(str(exc)) from None


COLUMNS = ("started_at", "state", "severity", "rule", "kind", "series", "value", "resolved_at")


def _summary(deliveries: list[dict[str, Any]]) -> str:
    """``ops firing:delivered(3) resolved:pending(2)``: the last entry per webhook and event."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for d in deliveries:
        last[(d["webhook"], d["event"])] = d
    parts: dict[str, list[str]] = {}
    for (hook, event), d in last.items():
        parts.setdefault(hook, []).append(f"{event}:{d['outcome']}({d['attempt']})")
    return "; ".join(f"{hook} {' '.join(p)}" for hook, p in parts.items()) or "-"


def print_table(alerts: list[dict[str, Any]]) -> None:
    rows = [
        [
            a["started_at"], a["state"], a["severity"], a["rule"], a["kind"],
            f"{a['measurement']}/{a['site_id']}/{a['device_id'] or '*'}/{a['field']}",
            "-" if a["value"] is None else f"{a['value']:.6g}",
            a["resolved_at"] or "-", _summary(a["deliveries"]),
        ]
        for a in alerts
    ]  # fmt: skip
    header = [*COLUMNS, "deliveries"]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print(f"({len(alerts)} alerts)", file=sys.stderr)
