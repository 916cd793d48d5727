"""A tiny asyncio HTTP server for ``/health`` and ``/metrics`` (no web framework needed)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self, host: str, port: int, health: Callable[[], dict], registry: CollectorRegistry
    ) -> None:
        self.host, self.port = host, port
        self._health = health
        self._registry = registry
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if path == "/health":
                body_obj = self._health()
                status = 503 if body_obj["status"] == "error" else 200
                body, ctype = json.dumps(body_obj).encode(), "application/json"
            elif path == "/metrics":
                status, body, ctype = 200, generate_latest(self._registry), CONTENT_TYPE_LATEST
            else:
                status, body, ctype = 404, b"not found: try /health or /metrics\n", "text/plain"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        except Exception:  # the health endpoint must never take the daemon down
            log.exception("health endpoint failed")
        finally:
            writer.close()
