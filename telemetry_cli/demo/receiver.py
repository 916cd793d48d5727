"""The demo's webhook receiver: verifies each delivery's Standard Webhooks signature and
prints it, so a new user sees an alert arrive where they started the demo.

It is what a real receiver does, in a few lines, with the standard library only:
recompute ``HMAC-SHA256(key, id.timestamp.body)`` with the key from the ``whsec_`` secret,
compare it in constant time with each ``v1,`` signature of ``webhook-signature`` (several
are allowed during a key rotation), refuse timestamps more than five minutes away (a
replayed request), and drop a ``webhook-id`` it has already accepted (delivery is at least
once: a retry after a lost answer carries the same id). A verified delivery is answered
204; a bad or missing signature 401, a malformed body 400, so the outbox records it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300  # Standard Webhooks' replay window
MAX_BODY = 1 << 20


class InvalidSignature(ValueError):
    """The request was not signed with our secret (or is too old / from the future)."""


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None) -> dict:
    """The JSON payload of a correctly signed request; raises InvalidSignature otherwise.
    ``headers`` are looked up case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature(f"webhook-timestamp {stamp!r} is not Unix seconds") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise InvalidSignature(f"webhook-timestamp {timestamp} is more than 5 minutes away")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return json.loads(body)
    raise InvalidSignature("no v1 signature matches")


def describe(payload: dict) -> str:
    """One line for a terminal: what fired or resolved, where, and the value."""
    data = payload.get("data") or {}
    state = str(payload.get("type", "?")).removeprefix("alert.")
    where = f"{data.get('site_id')}/{data.get('device_id') or '*'}"  # a site alert: no device
    value = data.get("value")
    shown = f"{value:g}" if isinstance(value, int | float) else str(value)
    series = f"{data.get('measurement')}.{data.get('field')}"
    # a resolved event carries the value that fired the alert, not the in-bounds one
    what = f"{series} = {shown}" if state != "resolved" else f"{series} (fired at {shown})"
    return f"ALERT {state:<8} {data.get('severity', '?'):<8} {data.get('rule')}: {what} at {where}"


class Receiver:
    """A threaded HTTP server on loopback that verifies and reports each delivery.

    ``report`` gets one line per verified (and first-seen) delivery, ``reject`` one per
    refused request. ``received`` counts verified deliveries."""

    def __init__(
        self,
        key: bytes,
        port: int,
        report: Callable[[str], None],
        reject: Callable[[str], None] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.key = key
        self.report = report
        self.reject = reject or report
        self.received = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, headers: Mapping[str, str], body: bytes) -> int:
        """Verify and report one request; the HTTP status to answer."""
        try:
            payload = verify(self.key, headers, body)
        except InvalidSignature as exc:
            self.reject(f"webhook refused (401): {exc}")
            return 401
        except ValueError:
            self.reject("webhook refused (400): the body is not JSON")
            return 400
        msg_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self._lock:
            if msg_id in self._seen:
                return 204  # a retry of what we already have: acknowledge, do not repeat
            self._seen.add(msg_id)
            self.received += 1
        self.report(describe(payload) + "  (signature verified)")
        return 204

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit() or int(length) > MAX_BODY:
                    status = 413 if length.isdigit() else 400
                else:
                    body = self.rfile.read(int(length))
                    status = receiver.handle(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:  # the demo prints its own lines
                pass

        return Handler
