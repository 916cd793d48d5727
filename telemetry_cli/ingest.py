"""``telemetry ingest``: run the ingest daemon (same as ``python -m ingest_daemon``)."""

from __future__ import annotations

import argparse

HELP = """Consume readings from NATS JetStream (stream IOT, subjects iot.<measurement>.<site>.<device>),
validate them, store them and acknowledge only after the store commits. Invalid readings go
to stream IOT_DLQ with the reason in headers. Serves /health and /metrics.

Every flag overrides its environment variable (TELEMETRY_NATS_URL, TELEMETRY_STORE_URL,
TELEMETRY_CONFIG, TELEMETRY_BATCH_SIZE, TELEMETRY_BATCH_MAX_DELAY_MS, TELEMETRY_HTTP_PORT,
TELEMETRY_DURABLE, TELEMETRY_LOG_LEVEL). Credentials come only from the environment:
TELEMETRY_NATS_USER/_PASSWORD, TELEMETRY_NATS_TOKEN, TELEMETRY_NATS_CREDS,
TELEMETRY_NATS_TLS_CA/_CERT/_KEY."""


def register(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="run the NATS ingest daemon",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated")
    p.add_argument(
        "--store-url", help="sqlite:///path.db, influxdb://host:8086/db, influxdb2://..."
    )
    p.add_argument("--config", dest="config_path", help="TOML config file")
    p.add_argument("--durable", help="durable consumer name shared by all daemons")
    p.add_argument("--batch-size", type=int, help="points per store commit (default 5000)")
    p.add_argument("--batch-max-delay-ms", type=int, help="longest a batch waits (default 100)")
    p.add_argument("--http-port", type=int, help="/health and /metrics port (0 = any, -1 = off)")
    p.add_argument("--http-host", help="address for /health and /metrics (default 127.0.0.1)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--check", action="store_true", help="validate settings and config, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest_daemon.runner import run_daemon
    from ingest_daemon.settings import Settings, SettingsError
    from telemetry_cli.errors import CliError
    from telemetry_core.config import load_config
    from telemetry_core.store import open_store

    keys = (
        "nats_url", "store_url", "config_path", "durable", "batch_size",
        "batch_max_delay_ms", "http_port", "http_host", "log_level",
    )  # fmt: skip
    try:
        settings = Settings.load(**{k: getattr(args, k) for k in keys})
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    load_config(settings.config_path)  # fail fast on a bad config file
    if args.check:
        open_store(settings.store_url).close()
        print("settings and config are valid")
        return 0
    return run_daemon(settings)
