"""One ingest daemon per InfluxDB database: a lease in a NATS KV bucket.

Why: InfluxDB has no conditional write, so "the message later in the stream wins" is a
read before each write (``telemetry_core/store/influx/order.py``), which is exact only
while nobody else writes raw points in between. Within a process the store serialises its
writes; across processes this lease does. Several daemons want ``postgresql://``, whose
upsert compares sequences inside the database.

How:

* **Take.** ``create`` on the key is compare-and-set (it succeeds only when the key is
  absent), in bucket ``telemetry_writers`` whose entries expire ``ttl`` (15 s) after their
  last write (the stream's max age). The key names the server and database, not the URL's
  scheme, so ``influxdb://`` and ``influxdb2://`` on one database share it.
* **Held by another.** The holder rewrites its entry every ``refresh`` (3 s). A daemon that
  finds the key watches it: a new revision means a live holder, and the daemon exits at
  start with one line (exit status 2, :class:`LeaseHeld`). No new revision for two refresh
  periods means a dead holder (``kill -9``, power cut): it logs that once and takes the key
  when the server has expired it.
* **Hold.** ``update(last=revision)`` every ``refresh``. Writes go through
  :meth:`WriterLease.guard`, which lets a write *start* only while the lease is certain to
  be ours: until ``margin`` (5 s) before the server could expire it, counted from the
  moment the last successful refresh was *sent*. A refresh that finds another revision, or
  no successful refresh before that point, is a lost lease: a fault (exit status 1), and
  no further write starts (they raise ``StoreUnavailable``, so nothing is acknowledged).
* **Release** on a clean stop: after the last write returned, ``delete(last=revision)``,
  so a waiting daemon takes over at once instead of after ``ttl``.

What this does not cover is in docs/influxdb.md ("Stream order").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from telemetry_core.store import Point, Store, StoreError, StoreUnavailable, WriteResult
from telemetry_core.store.urls import scheme_of

log = logging.getLogger(__name__)

BUCKET = "telemetry_writers"
TTL_S = 15.0  # the server forgets an entry this long after its last write
REFRESH_S = 3.0  # the holder rewrites its entry this often
MARGIN_S = 5.0  # no write starts later than this before the server could expire the entry
_NATS_ERRORS = (nats.errors.Error, OSError, asyncio.TimeoutError)


class LeaseHeld(StoreError):
    """Another live daemon writes to this InfluxDB database (exit status 2, one line)."""


class LeaseLost(RuntimeError):
    """The lease ran out or was taken while this daemon held it."""


def lease_key(url: str) -> tuple[str, str] | None:
    """(KV key, "database D at host:port") for an InfluxDB store URL; None for others."""
    if scheme_of(url) not in ("influxdb", "influxdb2"):
        return None
    parts = urlsplit(url)
    host, port, database = (parts.hostname or "").lower(), parts.port or 8086, parts.path
    database = unquote(database.lstrip("/"))
    digest = hashlib.sha256(f"{host}:{port}/{database}".encode()).hexdigest()[:16]
    return f"influxdb.{database}.{digest}", f"database {database} at {host}:{port}"


class WriterLease:
    def __init__(
        self,
        key: str,
        what: str,
        on_lost: Callable[[BaseException, str], None],
        *,
        ttl_s: float = TTL_S,
        refresh_s: float = REFRESH_S,
        margin_s: float = MARGIN_S,
    ) -> None:
        self.key, self.what = key, what
        self.ttl_s, self.refresh_s, self.margin_s = ttl_s, refresh_s, margin_s
        self._on_lost = on_lost
        self.id = secrets.token_hex(8)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        holder = {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "since": since}
        self.value = json.dumps(holder).encode()
        self.revision: int | None = None
        self.valid_until = 0.0  # monotonic: no write starts after this
        self.lost = False
        self._kv: Any = None
        self._task: asyncio.Task[None] | None = None
        self._writing = threading.Lock()  # held by a write in progress

    @classmethod
    def for_store(
        cls, store: Store, on_lost: Callable[[BaseException, str], None]
    ) -> WriterLease | None:
        """The lease an InfluxDB store needs; None for stores that keep order themselves."""
        found = lease_key(getattr(store, "url", "") or "")
        return None if found is None else cls(*found, on_lost)

    # -- the guard on the write path (writer thread) -----------------------------------
    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self.valid_until

    def guard(self, store: Store) -> Store:
        return _LeasedStore(store, self)

    # -- take, hold, release (event loop) ----------------------------------------------
    async def take(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """Take the lease, waiting out a dead holder's; raises LeaseHeld for a live one.
        Returns without the lease when ``stop`` is set meanwhile (writes stay refused)."""
        seen: tuple[int | None, float] | None = None
        waiting_logged = nats_warned = False
        while not stop.is_set():
            try:
                if self._kv is None:
                    self._kv = await self._bucket(js)
                if await self._try_create():
                    return
                entry = await self._kv.get(self.key)
            except nats.js.errors.KeyNotFoundError:
                continue  # expired or released meanwhile: try again at once
            except _NATS_ERRORS as exc:  # JetStream not ready, a reconnect: keep trying
                if not nats_warned:
                    log.warning("writer lease: NATS did not answer (%s), retrying", exc)
                nats_warned = True
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            now = time.monotonic()
            if seen is None:
                seen = (entry.revision, now)
            elif entry.revision != seen[0]:
                raise LeaseHeld(
                    f"another ingest daemon ({_holder(entry.value)}) is writing to InfluxDB "
                    f"{self.what}; InfluxDB keeps stream order with one daemon per database: "
                    "stop that one, or use a postgresql:// store to run several daemons"
                )
            elif not waiting_logged and now - seen[1] > 2 * self.refresh_s:
                waiting_logged = True
                log.warning(
                    "the writer lease for InfluxDB %s is held by %s, which stopped refreshing "
                    "it (killed?): waiting up to %.0f s for it to expire",
                    self.what, _holder(entry.value), self.ttl_s,
                )  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.5, self.refresh_s / 4))

    async def _try_create(self) -> bool:
        """Create the key (compare-and-set on "absent"); True when the lease is ours."""
        sent = time.monotonic()
        try:
            self.revision = await self._kv.create(self.key, self.value)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        self.valid_until = sent + self.ttl_s - self.margin_s
        log.info("writer lease for InfluxDB %s taken (key %s)", self.what, self.key)
        self._task = asyncio.create_task(self._hold())
        self._task.add_done_callback(self._hold_ended)
        return True

    def _hold_ended(self, task: asyncio.Task[None]) -> None:
        """An exception nobody planned for in the refresh loop loses the lease too."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.lost = True
            self._on_lost(exc, "the InfluxDB writer lease")

    async def _bucket(self, js: JetStreamContext) -> Any:
        try:
            kv = await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            try:
                kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=BUCKET,
                        description="one ingest daemon per InfluxDB database",
                        ttl=self.ttl_s,
                        history=1,
                        storage=StorageType.FILE,
                    )
                )
            except nats.js.errors.BadRequestError:  # created by another daemon meanwhile
                kv = await js.key_value(BUCKET)
        ttl = (await kv.status()).ttl
        if ttl:  # the bucket's, whoever created it, decides when entries expire
            self.ttl_s = float(ttl)
            self.margin_s = min(self.margin_s, self.ttl_s / 3)
            self.refresh_s = min(self.refresh_s, self.ttl_s / 5)
        return kv

    async def _hold(self) -> None:
        warned = False
        while True:
            await asyncio.sleep(self.refresh_s)
            sent = time.monotonic()
            try:
                self.revision = await asyncio.wait_for(
                    self._kv.update(self.key, self.value, last=self.revision), self.refresh_s
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                if not await self._still_ours():
                    return self._lose("its entry was replaced or expired")
                continue
            except _NATS_ERRORS as exc:
                if time.monotonic() >= self.valid_until:
                    return self._lose(
                        f"no refresh succeeded in time ({str(exc) or type(exc).__name__})"
                    )
                if not warned:
                    log.warning("writer lease refresh failed, retrying: %s", exc)
                warned = True
                continue
            self.valid_until = sent + self.ttl_s - self.margin_s
            warned = False

    async def _still_ours(self) -> bool:
        """An update that timed out may have been applied: adopt its revision if so."""
        try:
            entry = await self._kv.get(self.key)
        except (nats.js.errors.KeyNotFoundError, *_NATS_ERRORS):
            return False
        if entry.value != self.value:
            return False
        self.revision = entry.revision
        return True

    def _lose(self, why: str) -> None:
        self.lost = True
        self._on_lost(
            LeaseLost(f"writer lease for InfluxDB {self.what} lost: {why}; no further writes"),
            "the InfluxDB writer lease",
        )

    async def release(self, timeout_s: float = 10.0) -> None:
        """Stop refreshing; once no write is in progress, delete the entry (if still ours)
        so a waiting daemon need not wait for it to expire."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held, self.valid_until = self.revision is not None and not self.lost, 0.0
        if not held:
            return
        idle = await asyncio.to_thread(self._writing.acquire, timeout=timeout_s)
        if not idle:
            log.warning("a write is still in progress: the writer lease is left to expire")
            return
        self._writing.release()
        try:
            await self._kv.delete(self.key, last=self.revision)
            log.info("writer lease for InfluxDB %s released", self.what)
        except _NATS_ERRORS as exc:
            log.warning("writer lease not released (it expires in %.0f s): %s", self.ttl_s, exc)


def _holder(value: bytes | None) -> str:
    try:
        doc = json.loads(value or b"{}")
        return f"host {doc['host']}, pid {doc['pid']}, since {doc['since']}"
    except (ValueError, KeyError, TypeError):
        return "unknown holder"


class _LeasedStore:
    """The store, with raw writes refused unless the lease is certain to be held."""

    def __init__(self, store: Store, lease: WriterLease) -> None:
        self._store, self._lease = store, lease

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_points(
        self,
        points: Sequence[Point],
        *,
        seqs: Sequence[int] | None = None,
        late_cutoff_ns: int | None = None,
    ) -> WriteResult:
        with self._lease._writing:
            if not self._lease.valid():
                raise StoreUnavailable(
                    f"not writing to InfluxDB {self._lease.what}: this daemon does not hold "
                    "its writer lease"
                )
            return self._store.write_points(points, seqs=seqs, late_cutoff_ns=late_cutoff_ns)

    def __repr__(self) -> str:
        return f"{self._store!r} (leased)"
