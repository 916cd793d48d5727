"""The NATS connection: options from the settings, backoff and sparse logging while NATS
cannot be reached, and start-up that a signal can interrupt.

Why retry forever: the daemon may start before NATS does (a host boot, a compose file),
and a NATS restart must not need a daemon restart. Why with backoff and few log lines: a
daemon that cannot reach NATS is a pod that waits, and its log must keep the one line
that says why readable. Why interruptible: SIGTERM or SIGINT ends the daemon promptly in
every state, connected or not (``until_stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client

from ingest_daemon.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_FIRST_S = 0.5  # wait after the first failed attempt; doubles with each failure
BACKOFF_CAP_S = 10.0  # longest wait between attempts (also NATS back -> ingest again)
SUMMARY_EVERY_S = 60.0  # one log line per minute while NATS stays unreachable


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
    """The daemon's connection: ``server_options`` plus reconnecting forever (the backoff
    between attempts is waited out in ``on_error``: see ``Attempts``)."""
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


class Attempts:
    """Failed attempts to reach NATS since the last connection: the wait before the next
    one, and the few log lines about them.

    Why: nats-py retries on its own (``max_reconnect_attempts=-1``) and reports every
    failed attempt to ``error_cb``. Left alone, two unreachable servers made four
    ``Connection refused`` warnings a second, forever, with no backoff. Here ``error_cb``
    waits out a delay that doubles from ``first_s`` up to ``cap_s`` (nats-py awaits the
    callback before its next attempt, so the wait is the backoff), the first failure of an
    outage is logged, then one summary line every ``summary_s``. The wait comes after each
    pass over the server list, so the next server is tried at once (a failover)."""

    def __init__(
        self,
        *,
        first_s: float = BACKOFF_FIRST_S,
        cap_s: float = BACKOFF_CAP_S,
        summary_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_s, self.cap_s, self.summary_s = first_s, cap_s, summary_s
        self.clock = clock
        self.failures = 0
        self.since: float | None = None  # when the first failure of this outage happened
        self.last_error: str | None = None
        self._summary_at = 0.0

    def failed(self, exc: BaseException, servers: int = 1) -> float:
        """Count (and maybe log) one failed attempt; the seconds to wait before the next.

        With several ``servers`` the wait comes after each pass over all of them, so a
        failover to a live server right after a dead one costs no wait."""
        now = self.clock()
        self.failures += 1
        self.last_error = (str(exc) or type(exc).__name__)[:300]
        servers = max(1, servers)
        passes = self.failures // servers
        delay = 0.0
        if self.failures % servers == 0:
            delay = min(self.first_s * 2 ** min(passes - 1, 30), self.cap_s)
            delay *= random.uniform(0.8, 1.0)  # several daemons do not retry in step
        if self.failures == 1:
            self.since, self._summary_at = now, now + self.summary_s
            log.warning(
                "NATS not reachable (%s); retrying with backoff (at most %.0fs apart), "
                "a summary every %.0fs",
                self.last_error,
                self.cap_s,
                self.summary_s,
            )
        elif now >= self._summary_at:
            self._summary_at = now + self.summary_s
            log.warning(
                "NATS still not reachable: %d failed attempts in %.0fs (last: %s); next in %.1fs",
                self.failures,
                now - (self.since or now),
                self.last_error,
                delay,
            )
        return delay

    def succeeded(self) -> None:
        """Connected: log how long it took when there were failures, and start over."""
        if self.failures:
            log.info(
                "NATS reachable again after %d failed attempts in %.1fs",
                self.failures,
                self.clock() - (self.since or self.clock()),
            )
        self.failures, self.since, self.last_error = 0, None, None

    def status(self) -> dict[str, Any]:
        """For ``/health``: the failed attempts of the current outage."""
        down = None if self.since is None else round(self.clock() - self.since, 1)
        return {"failed_attempts": self.failures, "down_s": down, "error": self.last_error}


async def until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await ``awaitable`` unless ``stop`` is set first, which cancels it: (True, its result)
    or (False, None). Its exception, if it fails first, is raised.

    Why: start-up (connecting, creating streams) may wait for NATS indefinitely; a SIGTERM
    or SIGINT meanwhile must end the process promptly, not after NATS comes back."""
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if work.done():
        return True, work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return False, None


async def close_quietly(nc: Client) -> None:
    """Close a client in whatever state it is (never connected, reconnecting, closed)."""
    if nc.is_closed:
        return
    try:
        await nc.close()
    except (nats.errors.Error, OSError) as exc:  # closing anyway
        log.debug("close: %s", exc)
