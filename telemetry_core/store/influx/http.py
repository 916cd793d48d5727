"""The v1-compatible HTTP API (``/write``, ``/query``, ``/ping``), with plain ``http.client``.

Why not a client library: the v1 API is three endpoints, and a keep-alive
``http.client`` connection costs the daemon's write path next to nothing (the goal is to
reach at least half of what a bare client writing prepared line protocol achieves).
InfluxDB 1.x, 2.x (OSS >= 2.4 maps buckets to databases) and 3.x all serve it.

Errors are sorted for the caller (:func:`classify`): a refused connection, a timeout, a
5xx, 408 or 429 means "try again later" (``StoreUnavailable``: the daemon backs off and
JetStream buffers); a write the server refuses for its data (400 field type conflict,
partial write, 413, 422) is ``StoreRefused`` (the daemon dead-letters those messages); 401
and 403 are ``InfluxAuthError`` (the token or credentials, never the data); any other 4xx
or a statement error is a request this server will never accept (``InfluxRequestError``,
with the server's own message).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

from telemetry_core.store.base import StoreError, StoreRefused, StoreUnavailable


class InfluxRequestError(ValueError):
    """The server refused a request it will keep refusing (a bad query, an unknown
    database): neither an outage nor a refusal of the data."""


class InfluxRefused(StoreRefused, InfluxRequestError):
    """A write the server refuses for its data (field type conflict, partial write)."""


class InfluxAuthError(StoreError):
    """401/403: the server does not accept the token or credentials for this request."""


def classify(
    status: int, message: str, what: str, *, write: bool = False, scheme: str = "influxdb"
) -> Exception:
    """The exception for an HTTP error answer of InfluxDB (1.x, 2.x or 3.x) to ``what``."""
    text = f"{scheme} {what} refused ({status}): {message}"
    if status >= 500 or status in (408, 429):
        return StoreUnavailable(f"{scheme} {what} failed ({status}): {message}")
    if status in (401, 403):
        return InfluxAuthError(
            f"{scheme} {what} not authorised ({status}): {message}: check the token in "
            "INFLUXDB_TOKEN (its permissions on this database/bucket) or the user and "
            "password in the store URL"
        )
    if write and status in (400, 413, 422):
        return InfluxRefused(text)
    return InfluxRequestError(text)


@dataclass
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list] = field(default_factory=list)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted (names are validated before they get here)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """An InfluxQL string literal, single-quoted with backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class V1Http:
    """One keep-alive connection, serialised by a lock (callers may share a store)."""

    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        timeout_s: float = 30.0,
        retention_policy: str | None = None,
    ) -> None:
        self.host, self.port, self.database = host, port, database
        self._tls, self._timeout_s = tls, timeout_s
        self.retention_policy = retention_policy
        self._headers = {"Connection": "keep-alive"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username:
            raw = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def fork(self) -> V1Http:
        """Another connection with the same settings, for a concurrent request."""
        twin = object.__new__(V1Http)
        twin.__dict__.update(self.__dict__)
        twin._conn, twin._lock = None, threading.Lock()
        return twin

    # -- transport -------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        if self._tls:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self._timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self._timeout_s)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; a stale keep-alive connection is retried once on a new one
        (every request here is idempotent: writes upsert, queries read)."""
        all_headers = {**self._headers, **(headers or {})}
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    self._conn.request(method, path, body=body, headers=all_headers)
                    resp = self._conn.getresponse()
                    data = resp.read()
                except (http.client.HTTPException, OSError) as exc:
                    self._conn.close()
                    self._conn = None
                    stale = isinstance(
                        exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                    )
                    if attempt == 0 and stale:
                        continue
                    raise StoreUnavailable(
                        f"influxdb at {self.host}:{self.port} unreachable: {exc}"
                    ) from exc
                if resp.getheader("Connection", "").lower() == "close":
                    self._conn.close()
                    self._conn = None
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    def _check(self, status: int, data: bytes, what: str) -> None:
        if status >= 300:
            raise classify(status, error_message(data), what, write=what == "write")

    # -- API -------------------------------------------------------------------------
    def ping(self) -> str:
        """The server's version; raises StoreUnavailable when it does not answer."""
        status, headers, data = self.request("GET", "/ping")
        self._check(status, data, "ping")
        return headers.get("x-influxdb-version", "")

    def write(self, body: str | bytes) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        payload = body.encode() if isinstance(body, str) else body
        if not payload:
            return
        status, _, data = self.request(
            "POST",
            "/write?" + urlencode(params),
            payload,
            {"Content-Type": "text/plain; charset=utf-8"},
        )
        self._check(status, data, "write")

    def query(self, statements: str, *, chunk_size: int = 20000) -> list[list[Series]]:
        """Run ``;``-separated InfluxQL statements; one list of series per statement.

        Chunked responses keep large reads within servers' ``max-row-limit``; the parts of
        a series split over chunks are joined here.
        """
        params = {"db": self.database, "epoch": "ns", "q": statements, "chunked": "true"}
        params["chunk_size"] = str(chunk_size)
        if self.retention_policy:
            params["rp"] = self.retention_policy
        status, _, data = self.request(
            "POST",
            "/query",
            urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self._check(status, data, "query")
        out: dict[int, list[Series]] = {}
        for doc in _documents(data):
            if "error" in doc:
                raise InfluxRequestError(f"influxdb query failed: {doc['error']}")
            for result in doc.get("results", []):
                if "error" in result:
                    raise InfluxRequestError(f"influxdb query failed: {result['error']}")
                series_list = out.setdefault(result.get("statement_id", 0), [])
                for raw in result.get("series", []):
                    tags = raw.get("tags") or {}
                    last = series_list[-1] if series_list else None
                    if last is not None and last.name == raw["name"] and last.tags == tags:
                        last.values.extend(raw.get("values", []))
                    else:
                        series_list.append(
                            Series(raw["name"], tags, raw["columns"], list(raw.get("values", [])))
                        )
        count = statements.count(";") + 1
        return [out.get(i, []) for i in range(max(count, len(out)))]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _documents(data: bytes) -> Iterator[dict]:
    """Chunked responses are JSON documents one per line; unchunked ones a single one."""
    for line in data.splitlines():
        if line.strip():
            yield json.loads(line)


def error_message(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500] or "(no message)"
    if isinstance(doc, dict):
        return str(doc.get("error") or doc.get("message") or doc)[:500]
    return text[:500]
