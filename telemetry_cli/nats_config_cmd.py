"""``telemetry nats-config``: NATS users and permissions for the sites in the TOML file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = """Write a nats-server include file with least-privilege users, and one credential file per
user, for the sites in the TOML file (and any --site):

  devices-<site>  may publish only on iot.*.<site>.> (with PubAcks); nothing else at all
  ingest          the daemon: its streams, its durable consumer, acks, dead letters
  operator        telemetry dlq list/replay: stream IOT_DLQ, republish to iot.>

Every user may subscribe only to its own inbox prefix (_INBOX_<user>), so no user but the
daemon receives raw data. Add `include "telemetry-auth.conf"` to every server's config (all
nodes of a cluster) and restart or reload them; load a credential file before running the
daemon or telemetry dlq: `set -a; . credentials/ingest.env; set +a`.

Passwords: TELEMETRY_NATS_PASSWORD_<USER> (e.g. TELEMETRY_NATS_PASSWORD_DEVICES_SITE_A) when
set, else the one in the user's existing credential file (re-running after adding a site
keeps the others), else generated (--rotate generates new ones). The server config holds
bcrypt hashes only; passwords are never printed."""


def register(sub) -> None:
    p = sub.add_parser(
        "nats-config",
        help="write NATS users with per-site publish permissions",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="directory for the include file and credentials")
    p.add_argument("--config", help="TOML file whose [sites] get device users ($TELEMETRY_CONFIG)")
    p.add_argument("--site", action="append", default=[], help="another site (repeatable)")
    p.add_argument(
        "--durable", help="the daemon's durable consumer ($TELEMETRY_DURABLE, telemetry-ingest)"
    )
    p.add_argument("--rotate", action="store_true", help="new passwords for users without one set")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_cli.nats_config import AUTH_FILE, plan_users, write_auth
    from telemetry_core.config import load_config
    from telemetry_core.identifiers import IdentifierError
    from telemetry_core.subjects import DEFAULT_DURABLE

    config_path = args.config or os.environ.get("TELEMETRY_CONFIG")
    sites = list(load_config(config_path).sites) if config_path else []
    sites += args.site
    if not sites:
        raise CliError("no sites: give --config with [sites.<id>] tables, or --site")
    durable = args.durable or os.environ.get("TELEMETRY_DURABLE") or DEFAULT_DURABLE
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file, not a directory")
    try:
        users = plan_users(sites, durable)
    except IdentifierError as exc:
        raise CliError(str(exc)) from None
    try:
        written = write_auth(
            out, users, durable=durable, environ=dict(os.environ), rotate=args.rotate
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write to {out}: {exc.strerror or exc}") from None
    print(f"wrote {written.auth_file} (account TELEMETRY, {len(users)} users)")
    for spec in users:
        source = written.sources[spec.name]
        print(
            f"  {spec.name:<24} {spec.describe()}  [{written.credentials[spec.name]}, password {source}]"
        )
    print(
        f'add to every nats-server config: include "{AUTH_FILE}" (nats-server reads the path'
        " relative to that config file's folder, even when it starts with /)",
        file=sys.stderr,
    )
    return 0
