"""``telemetry``: one console command, a subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; heavy imports
(nats, dagster, polars) happen inside the command, so ``telemetry --help`` is instant.
Bad input gets a one-line ``telemetry: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from telemetry_cli.errors import CliError

__all__ = ["CliError", "main"]

# Order is the order shown in --help.
COMMAND_MODULES = (
    "telemetry_cli.demo.command",
    "telemetry_cli.ingest",
    "telemetry_cli.simulate",
    "telemetry_cli.query",
    "telemetry_cli.backfill.command",
    "telemetry_cli.dlq",
    "telemetry_cli.alerts",
    "telemetry_cli.silence",
    "telemetry_cli.api",
    "telemetry_cli.nats_config_cmd",
)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes get one line too (argparse would print the whole usage first);
    subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="telemetry",
        description="Building telemetry: NATS ingest, rollups in Dagster, queries.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command that is not built yet is simply absent
            raise
        module.register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ingest_daemon.settings import SettingsError  # e.g. a stream with too few replicas
    from telemetry_core.config import ConfigError
    from telemetry_core.identifiers import IdentifierError
    from telemetry_core.store import StoreError, StoreUnavailable
    from telemetry_core.timeutil import TimestampError

    return (
        CliError,
        ConfigError,
        IdentifierError,
        SettingsError,
        StoreError,
        StoreUnavailable,
        TimestampError,
    )


TIME_OPTIONS = ("--start", "--end", "--since", "--until")


def _glue_relative_times(argv: list[str]) -> list[str]:
    """``--start -8h`` would read as an unknown option ``-8h``: glue it to ``--start=-8h``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in TIME_OPTIONS and i + 1 < len(argv) and argv[i + 1][:1] in "-+":
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_relative_times(sys.argv[1:] if argv is None else argv))
    try:
        result = args.func(args)
    except _user_errors() as exc:
        print(f"telemetry {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
