"""One ``backend`` fixture, parametrised over every store, for the shared contract suite.

* ``sqlite`` -- always.
* ``influxdb`` -- a real ``influxd`` (Debian's 1.6.7 in CI) started for the session on
  free loopback ports with every directory in a temporary dir; each test gets its own
  database. Absent binary: ``need_service`` (skip, or fail under
  ``TELEMETRY_REQUIRE_SERVICES=1``).
* ``influxdb2`` -- only when ``INFLUXDB2_URL``, ``INFLUXDB2_TOKEN`` and ``INFLUXDB2_ORG``
  point at a real 2.x server; otherwise a plain skip, also under
  ``TELEMETRY_REQUIRE_SERVICES=1``, because CI has no InfluxDB 2.x package to install
  (tests/core/test_lineprotocol.py covers exactly what that backend sends).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry_cli.services import start_influxd, stop_process
from telemetry_core.store import Store, open_store
from telemetry_core.store.sqlite import SqliteStore


def _shared_conftest():
    """tests/conftest.py (need_service, free_port, wait_port), loaded by path: every
    conftest is called ``conftest``, so a plain import would be ambiguous."""
    name = "telemetry_shared_conftest"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_shared = _shared_conftest()
free_port, need_service, wait_port = _shared.free_port, _shared.need_service, _shared.wait_port

INFLUXD = os.environ.get("INFLUXD_BINARY") or shutil.which("influxd") or "/usr/bin/influxd"
V2_ENV = ("INFLUXDB2_URL", "INFLUXDB2_TOKEN", "INFLUXDB2_ORG")


@dataclass
class InfluxServer:
    """An ``influxd`` of our own: its config, data and logs live in ``root``."""

    binary: str
    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start on free ports; a restart keeps the HTTP port (and the data)."""
        self.proc, self.port = start_influxd(self.binary, self.root, self.port)

    def drop(self, database: str) -> None:
        body = f'q=DROP DATABASE "{database}"'.encode()
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/query", data=body, timeout=10)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    if not Path(INFLUXD).exists():
        need_service(f"influxd not found at {INFLUXD} (apt-get install influxdb)")
    server = InfluxServer(INFLUXD, tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Backend:
    name: str
    store: Store
    #: A store of the same kind that cannot reach its server (closed port, locked file).
    outage: Callable[[], contextlib.AbstractContextManager[Store]]


@contextlib.contextmanager
def _sqlite_outage(path: Path) -> Iterator[Store]:
    store = SqliteStore(str(path), busy_timeout_s=0.05)
    locker = sqlite3.connect(str(path), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield store
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        store.close()


@contextlib.contextmanager
def _url_outage(url: str) -> Iterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _sqlite(tmp_path: Path) -> Iterator[Backend]:
    store = open_store(f"sqlite:///{tmp_path / 'contract.db'}")
    yield Backend("sqlite", store, lambda: _sqlite_outage(tmp_path / "outage.db"))
    store.close()


def _influxdb(server: InfluxServer) -> Iterator[Backend]:
    database = f"contract_{uuid.uuid4().hex[:12]}"
    store = open_store(f"influxdb://127.0.0.1:{server.port}/{database}")
    closed = f"influxdb://127.0.0.1:{free_port()}/{database}"
    yield Backend("influxdb", store, lambda: _url_outage(closed))
    store.close()
    server.drop(database)


def _influxdb2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    missing = [name for name in V2_ENV if not os.environ.get(name)]
    if missing:
        # Deliberately a plain skip, never need_service(): CI has no InfluxDB 2.x.
        pytest.skip(
            f"influxdb2:// contract suite not run: set {', '.join(missing)} to point it at a "
            "real InfluxDB 2.x server (unit tests cover what this backend sends)"
        )
    from urllib.parse import urlsplit

    from influxdb_client import InfluxDBClient

    base = urlsplit(os.environ["INFLUXDB2_URL"])
    token, org = os.environ["INFLUXDB2_TOKEN"], os.environ["INFLUXDB2_ORG"]
    monkeypatch.setenv("INFLUXDB_TOKEN", token)
    bucket = f"contract_{uuid.uuid4().hex[:12]}"
    tls = "&tls=true" if base.scheme == "https" else ""
    store = open_store(f"influxdb2://{base.netloc}/{bucket}?org={org}{tls}")
    closed = f"influxdb2://127.0.0.1:{free_port()}/{bucket}?org={org}"
    yield Backend("influxdb2", store, lambda: _url_outage(closed))
    store.close()
    with InfluxDBClient(url=os.environ["INFLUXDB2_URL"], token=token, org=org) as client:
        found = client.buckets_api().find_bucket_by_name(bucket)
        if found is not None:
            client.buckets_api().delete_bucket(found)


@pytest.fixture(params=["sqlite", "influxdb", "influxdb2"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    if request.param == "sqlite":
        yield from _sqlite(tmp_path)
    elif request.param == "influxdb":
        yield from _influxdb(request.getfixturevalue("influx_server"))
    else:
        yield from _influxdb2(monkeypatch)
