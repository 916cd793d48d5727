"""The ``ingest`` command line, shared by ``python -m ingest_daemon`` and ``telemetry ingest``.

It lives here, not in ``telemetry_cli``, so the daemon depends only on the core: the
``telemetry`` command adds these arguments to its own ``ingest`` subcommand.
"""

from __future__ import annotations

import argparse
import os
import sys

from ingest_daemon.settings import Settings, SettingsError

HELP = """Consume readings from NATS JetStream (stream IOT, subjects iot.<measurement>.<site>.<device>),
validate them, store them and acknowledge only after the store commits. Invalid readings go
to stream IOT_DLQ with the reason in headers. Serves /health and /metrics.

Every flag overrides its environment variable (TELEMETRY_NATS_URL, TELEMETRY_STORE_URL,
TELEMETRY_CONFIG, TELEMETRY_BATCH_SIZE, TELEMETRY_BATCH_MAX_DELAY_MS, TELEMETRY_HTTP_PORT,
TELEMETRY_DURABLE, TELEMETRY_LOG_LEVEL). Credentials come only from the environment:
TELEMETRY_NATS_USER/_PASSWORD, TELEMETRY_NATS_TOKEN, TELEMETRY_NATS_CREDS,
TELEMETRY_NATS_TLS_CA/_CERT/_KEY.

While NATS does not answer, the daemon retries with backoff (up to 10 s apart), logs the
first failure and then a summary a minute, and /health says degraded.

Exit status: 0 stopped by SIGTERM or SIGINT (in any state, also while NATS is still being
reached); 1 a fault: an unplanned exception (logged with its traceback, /health error;
nothing unacknowledged is lost, JetStream redelivers it); 2 a mistake in the settings, config
or secrets (one line on stderr); 130 Ctrl-C before start-up installed its signal handlers."""

FLAG_SETTINGS = (
    "nats_url", "store_url", "config_path", "durable", "batch_size",
    "batch_max_delay_ms", "http_port", "http_host", "log_level",
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated")
    p.add_argument(
        "--store-url",
        help="sqlite:///path.db, postgresql://user@host:5432/db, influxdb://host:8086/db, ...",
    )
    p.add_argument("--config", dest="config_path", help="TOML config file")
    p.add_argument("--durable", help="durable consumer name shared by all daemons")
    p.add_argument("--batch-size", type=int, help="points per store commit (default 5000)")
    p.add_argument("--batch-max-delay-ms", type=int, help="longest a batch waits (default 100)")
    p.add_argument("--http-port", type=int, help="/health and /metrics port (0 = any, -1 = off)")
    p.add_argument("--http-host", help="address for /health and /metrics (default 127.0.0.1)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate settings and config, check the store takes writes, then exit",
    )


def run(args: argparse.Namespace) -> int:
    """Settings from the environment and flags; ``--check`` validates and exits, otherwise
    the daemon runs until SIGTERM/SIGINT. Raises the core's user errors (``SettingsError``,
    ``ConfigError``, ``StoreError``, ...) for the caller to print as one line."""
    from ingest_daemon.runner import run_daemon
    from telemetry_core.alerts import resolve_secrets
    from telemetry_core.config import load_config
    from telemetry_core.store import open_store

    settings = Settings.load(**{k: getattr(args, k) for k in FLAG_SETTINGS})
    config = load_config(settings.config_path)  # fail fast on a bad config file
    resolve_secrets(config, os.environ)  # and on a missing or malformed webhook secret
    if args.check:
        store = open_store(settings.store_url)
        try:
            store.ping()  # reachable and writable, not only a well-formed URL
        finally:
            store.close()
        print("settings, config, secrets are valid and the store takes writes")
        return 0
    return run_daemon(settings)


def user_errors() -> tuple[type[Exception], ...]:
    from telemetry_core.config import ConfigError
    from telemetry_core.identifiers import IdentifierError
    from telemetry_core.store import StoreError, StoreUnavailable

    return (SettingsError, ConfigError, IdentifierError, StoreError, StoreUnavailable)


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest_daemon``: a mistake is one line on stderr and exit status 2."""
    prog = "python -m ingest_daemon"
    parser = argparse.ArgumentParser(
        prog=prog, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except user_errors() as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
