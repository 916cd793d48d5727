"""The NATS connection: options from the settings, and a connect that waits for the server.

Why retry forever at start: the daemon may start before NATS does (a host boot, a
compose file); once connected, nats-py reconnects on its own (unlimited attempts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client

from ingest_daemon.settings import Settings

log = logging.getLogger(__name__)


def server_options(settings: Settings) -> dict[str, Any]:
    """Servers, inbox prefix, credentials and TLS: what every client of ours (the daemon,
    ``telemetry dlq``, ``telemetry simulate``) passes to ``nats.connect``."""
    s = settings
    opts: dict[str, Any] = {"servers": s.nats_servers}
    if s.nats_inbox_prefix:  # a user allowed to subscribe only below its own prefix
        opts["inbox_prefix"] = s.nats_inbox_prefix
    if s.nats_user:
        opts["user"], opts["password"] = s.nats_user, s.nats_password
    if s.nats_token:
        opts["token"] = s.nats_token
    if s.nats_creds:
        opts["user_credentials"] = s.nats_creds
    if s.tls_ca or s.tls_cert:
        import ssl

        ctx = ssl.create_default_context(cafile=s.tls_ca)
        if s.tls_cert:
            ctx.load_cert_chain(s.tls_cert, s.tls_key)
        opts["tls"] = ctx
    return opts


def connect_options(
    settings: Settings,
    *,
    on_error: Callable[[Exception], Awaitable[None]],
    on_disconnect: Callable[[], Awaitable[None]],
    on_reconnect: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """The daemon's connection: ``server_options`` plus reconnecting forever."""
    return {
        **server_options(settings),
        "name": "telemetry-ingest",
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "error_cb": on_error,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "pending_size": 64 * 1024 * 1024,
        # Every subject we publish to is a constant, a reply subject the server gave us
        # (acks), or ``dlq.`` + a subject the server delivered: checking each again costs
        # about 0.3 µs an ack for nothing.
        "skip_subject_validation": True,
    }


async def connect(options: dict[str, Any], stop: asyncio.Event) -> Client | None:
    """Connect, retrying with backoff until connected or ``stop`` is set (then None)."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await nats.connect(**options)
        except (OSError, nats.errors.Error) as exc:
            log.warning(
                "NATS not reachable (%s); retrying in %.1fs", str(exc) or type(exc).__name__, delay
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 10.0)
    return None
