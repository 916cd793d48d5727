"""``telemetry silence``: add, list and expire silences (stored in the alerts database)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

HELP = """Silences mute notifications, never alerts: an alert whose labels match an active
silence is recorded and listed as always (telemetry alerts), and each notification it would
send is recorded suppressed with "reason": "silence <silence_id>". When the silence ends
(or is expired early) and the alert still fires, its alert.firing is delivered once then; a
resolve whose firing nobody heard is not sent either.

Labels: rule, kind, severity, measurement, site_id, device_id, field. A matcher is
KEY=VALUE, exact except that * matches any run of characters; all matchers must hold.

  telemetry silence add --match site_id=site-a --match device_id=meter-* --for 2h \\
      --comment "replacing meters" [--start T] [--by NAME]
  telemetry silence list [--state active|pending|expired|all]
  telemetry silence expire sil_0123456789abcdef

Durations: 90s, 30m, 2h, 1d. Times: RFC 3339, a date, now or relative (+1h, -30m).
The alerts database is the one telemetry alerts reads (see telemetry alerts --help)."""


def register(sub) -> None:
    p = sub.add_parser(
        "silence",
        help="add, list and expire silences (mute alert notifications)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    add = verbs.add_parser(
        "add",
        help="add a silence; prints its id",
        description="Mute the notifications of every alert whose labels match all --match "
        "KEY=VALUE (labels: rule, kind, severity, measurement, site_id, device_id, field; '*' "
        "in VALUE matches any run of characters) from --start (default now) for --for "
        "(90s, 30m, 2h, 1d) or until --until. Alerts are still recorded; each notification "
        "is recorded suppressed with the silence as its reason. Prints the new silence's id.",
    )
    add.add_argument(
        "--match", action="append", default=[], metavar="KEY=VALUE", help="a label matcher"
    )
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 90s, 30m, 2h, 1d")
    span.add_argument("--until", metavar="T", help="when the silence ends")
    add.add_argument("--start", metavar="T", help="when it starts (default now)")
    add.add_argument("--comment", required=True, help="why (required)")
    add.add_argument("--by", help="who (default: the user name)")
    _common(add)
    add.set_defaults(func=run_add)

    ls = verbs.add_parser(
        "list",
        help="list silences (default: active and pending)",
        description="List silences with their matchers, times, comment, author and state "
        "(active, pending: starts later, expired); --state all lists every one.",
    )
    ls.add_argument("--state", choices=("active", "pending", "expired", "all"))
    _common(ls)
    ls.set_defaults(func=run_list)

    expire = verbs.add_parser(
        "expire",
        help="end a silence now",
        description="End silence ID now. An alert it muted that is still firing has its "
        "alert.firing delivered once, by the next alert_job run.",
    )
    expire.add_argument("silence_id", metavar="ID")
    _common(expire, formats=False)
    expire.set_defaults(func=run_expire)


def _common(p: argparse.ArgumentParser, *, formats: bool = True) -> None:
    if formats:
        p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--store-url", help="store URL (default $TELEMETRY_STORE_URL)")
    p.add_argument(
        "--alerts-db", help="alerts database: a path or URL (default $TELEMETRY_ALERTS_DB)"
    )


def _open(args: argparse.Namespace) -> Any:
    from telemetry_cli.errors import CliError
    from telemetry_core.alerts.db import alerts_db_url, open_alerts_db
    from telemetry_core.store.base import StoreError, StoreUnavailable

    try:
        return open_alerts_db(args.alerts_db or alerts_db_url(args.store_url, os.environ))
    except (StoreError, StoreUnavailable) as exc:
        raise CliError(str(exc)) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_add(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.alerts.matchers import parse_duration, parse_match_args
    from telemetry_core.alerts.mutes import add_silence
    from telemetry_core.timeutil import parse_time_arg

    if not args.match:
        raise CliError("a silence needs at least one --match KEY=VALUE")
    if not args.comment.strip():
        raise CliError("a silence needs a --comment saying why")
    matchers = parse_match_args(args.match)
    now = time.time_ns()
    starts = parse_time_arg(args.start, now=now) if args.start else now
    ends = (
        starts + parse_duration(args.duration)
        if args.duration
        else parse_time_arg(args.until, now=now)
    )
    db = _open(args)
    try:
        silence = add_silence(
            db, matchers, starts_at=starts, ends_at=ends, comment=args.comment,
            created_by=args.by or _user(), now_ns=now,
        )  # fmt: skip
    finally:
        db.close()
    if args.format == "json":
        print(json.dumps(silence.as_json(now)))
    else:
        print(silence.silence_id)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from telemetry_core.alerts.mutes import SILENCE_STATES, list_silences

    states = {None: ("active", "pending"), "all": SILENCE_STATES}.get(args.state, (args.state,))
    db = _open(args)
    try:
        silences = list_silences(db, states)
    finally:
        db.close()
    if args.format == "json":
        json.dump(silences, sys.stdout)
        sys.stdout.write("\n")
        return 0
    header = ["silence_id", "state", "starts_at", "ends_at", "created_by", "matchers", "comment"]
    rows = [
        [s["silence_id"], s["state"], s["starts_at"], s["ends_at"], s["created_by"],
         " ".join(f"{k}={v}" for k, v in s["matchers"].items()), s["comment"]]
        for s in silences
    ]  # fmt: skip
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print(f"({len(silences)} silences)", file=sys.stderr)
    return 0


def run_expire(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.alerts.mutes import expire_silence
    from telemetry_core.timeutil import format_rfc3339

    db = _open(args)
    try:
        silence = expire_silence(db, args.silence_id)
    finally:
        db.close()
    if silence is None:
        raise CliError(f"no silence {args.silence_id!r} (see telemetry silence list --state all)")
    print(f"silence {silence.silence_id} expired at {format_rfc3339(silence.ends_at)}")
    return 0
