"""``telemetry ingest``: run the ingest daemon (same as ``python -m ingest_daemon``).

The arguments and their handling live in ``ingest_daemon.cli``: the daemon does not
depend on this package, this command depends on the daemon.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from ingest_daemon.cli import HELP, add_arguments

    p = sub.add_parser(
        "ingest",
        help="run the NATS ingest daemon",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest_daemon.cli import run as run_ingest
    from ingest_daemon.settings import SettingsError
    from telemetry_cli.errors import CliError

    try:
        return run_ingest(args)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
