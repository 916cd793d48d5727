"""NATS connections for CLI commands, with the daemon's settings (URL list, credentials, TLS).

The variables are the daemon's (TELEMETRY_NATS_URL, _USER/_PASSWORD, _TOKEN, _CREDS, TLS CA,
cert and key), read through ``ingest_daemon.settings``; nothing here logs a secret.
"""

from __future__ import annotations

from typing import Any


async def _quiet(_exc: Exception) -> None:
    """nats-py logs a traceback per failed attempt by default; the CLI says it once."""


def connect_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` from daemon settings."""
    opts: dict[str, Any] = {"servers": [u.strip() for u in settings.nats_url.split(",")]}
    if getattr(settings, "nats_inbox_prefix", None):  # the user's private inbox subjects
        opts["inbox_prefix"] = settings.nats_inbox_prefix
    if settings.nats_user:
        opts["user"], opts["password"] = settings.nats_user, settings.nats_password
    if settings.nats_token:
        opts["token"] = settings.nats_token
    if settings.nats_creds:
        opts["user_credentials"] = settings.nats_creds
    if settings.tls_ca or settings.tls_cert:
        import ssl

        ctx = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert:
            ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        opts["tls"] = ctx
    return opts


async def connect(nats_url: str | None = None):
    """Connect once (a few quick retries), or raise a one-line CliError naming the URL."""
    import nats
    from nats.errors import NoServersError

    from ingest_daemon.settings import Settings, SettingsError
    from telemetry_cli.errors import CliError
    from telemetry_core.store import redact_url

    try:
        settings = Settings.load(nats_url=nats_url)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    try:
        return await nats.connect(
            **connect_options(settings),
            connect_timeout=3,
            max_reconnect_attempts=2,
            error_cb=_quiet,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        where = redact_url(settings.nats_url)
        raise CliError(f"cannot connect to NATS at {where}: {exc or type(exc).__name__}") from None
