"""NATS connections for CLI commands, with the daemon's settings (URL list, credentials, TLS).

The variables are the daemon's (TELEMETRY_NATS_URL, _USER/_PASSWORD, _TOKEN, _CREDS, TLS CA,
cert and key), read through ``ingest_daemon.settings``; nothing here logs a secret.
"""

from __future__ import annotations


async def _quiet(_exc: Exception) -> None:
    """nats-py logs a traceback per failed attempt by default; the CLI says it once."""


async def connect(nats_url: str | None = None):
    """Connect once (a few quick retries), or raise a one-line CliError naming the URL."""
    import nats
    from nats.errors import NoServersError

    from ingest_daemon.connection import server_options
    from ingest_daemon.settings import Settings, SettingsError
    from telemetry_cli.errors import CliError
    from telemetry_core.store import redact_url

    try:
        settings = Settings.load(nats_url=nats_url)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        return await nats.connect(
            **server_options(settings),
            connect_timeout=3,
            max_reconnect_attempts=2,
            error_cb=_quiet,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        where = redact_url(settings.nats_url)
        raise CliError(
            f"cannot connect to NATS at {where}: {str(exc) or type(exc).__name__}"
        ) from None
