"""One ``backend`` fixture, parametrised over every store, for the shared contract suite.

* ``sqlite`` -- always.
* ``influxdb`` -- a real ``influxd`` (Debian's 1.6.7 in CI) started for the session on
  free loopback ports with every directory in a temporary dir; each test gets its own
  database. Absent binary: ``need_service`` (skip, or fail under
  ``TELEMETRY_REQUIRE_SERVICES=1``).
* ``postgresql`` -- a fresh database per test on the machine's PostgreSQL
  (``postgres_url``, tests/pg.py); its outage store points at a closed port.
* ``influxdb2`` -- only when ``TELEMETRY_INFLUXDB2_URL`` (``http://host:8086?org=<org>``)
  and ``INFLUXDB_TOKEN`` point at a real 2.x server; each test gets its own bucket.
  Otherwise a plain skip whose reason names the exemption: this is the one skip that
  ``TELEMETRY_REQUIRE_SERVICES=1`` does not turn into a failure, because no InfluxDB 2.x
  can be installed on this machine or in CI (Debian ships 1.6.7; the only registries
  reachable are PyPI, Debian and npm). tests/core/test_lineprotocol.py covers exactly what
  that backend sends, against a local HTTP server.
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
from urllib.parse import parse_qs, urlsplit

import pytest

from telemetry_cli.services import stop_process
from telemetry_core.store import Store, open_store
from telemetry_core.store.sqlite import SqliteStore
from tests.harness.influxd import start_influxd


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
V2_URL_ENV = "TELEMETRY_INFLUXDB2_URL"
V2_EXEMPTION = (
    "influxdb2:// needs a real InfluxDB 2.x server: set TELEMETRY_INFLUXDB2_URL "
    "(http://host:8086?org=<org>) and INFLUXDB_TOKEN. Exempt from TELEMETRY_REQUIRE_SERVICES: "
    "no InfluxDB 2.x package exists for this machine or CI (Debian ships 1.6.7)"
)


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
    #: Another store object on the same data (a second daemon, a second process).
    another: Callable[[], Store]


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
    url = f"sqlite:///{tmp_path / 'contract.db'}"
    store = open_store(url)
    yield Backend("sqlite", store, lambda: _sqlite_outage(tmp_path / "outage.db"),
                  lambda: open_store(url))  # fmt: skip
    store.close()


def _influxdb(server: InfluxServer) -> Iterator[Backend]:
    database = f"contract_{uuid.uuid4().hex[:12]}"
    url = f"influxdb://127.0.0.1:{server.port}/{database}"
    store = open_store(url)
    closed = f"influxdb://127.0.0.1:{free_port()}/{database}"
    yield Backend("influxdb", store, lambda: _url_outage(closed), lambda: open_store(url))
    store.close()
    server.drop(database)


def _influxdb2(monkeypatch: pytest.MonkeyPatch, token: str | None) -> Iterator[Backend]:
    base_url = os.environ.get(V2_URL_ENV)
    if not base_url or not token:
        # Deliberately a plain skip, never need_service(): the one documented exemption
        # from TELEMETRY_REQUIRE_SERVICES (README, docs/influxdb.md).
        pytest.skip(V2_EXEMPTION)
    from influxdb_client import InfluxDBClient

    base = urlsplit(base_url)
    org = parse_qs(base.query).get("org", [""])[-1]
    if base.scheme not in ("http", "https") or not base.hostname or not org:
        pytest.fail(f"{V2_URL_ENV} must look like http://host:8086?org=<org>", pytrace=False)
    monkeypatch.setenv("INFLUXDB_TOKEN", token)
    bucket = f"contract_{uuid.uuid4().hex[:12]}"
    tls = "&tls=true" if base.scheme == "https" else ""
    url = f"influxdb2://{base.netloc}/{bucket}?org={org}{tls}"
    store = open_store(url)
    closed = f"influxdb2://127.0.0.1:{free_port()}/{bucket}?org={org}"
    yield Backend("influxdb2", store, lambda: _url_outage(closed), lambda: open_store(url))
    store.close()
    server = f"{base.scheme}://{base.netloc}"
    with InfluxDBClient(url=server, token=token, org=org) as client:
        found = client.buckets_api().find_bucket_by_name(bucket)
        if found is not None:
            client.buckets_api().delete_bucket(found)


def _postgresql(url: str) -> Iterator[Backend]:
    store = open_store(url)
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/telemetry"
    yield Backend("postgresql", store, lambda: _url_outage(closed), lambda: open_store(url))
    store.close()


@pytest.fixture(params=["sqlite", "influxdb", "influxdb2", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    token = os.environ.get("INFLUXDB_TOKEN")
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)  # influxdb:// on 1.x: no auth
    if request.param == "sqlite":
        yield from _sqlite(tmp_path)
    elif request.param == "influxdb":
        yield from _influxdb(request.getfixturevalue("influx_server"))
    elif request.param == "postgresql":
        yield from _postgresql(request.getfixturevalue("postgres_url"))
    else:
        yield from _influxdb2(monkeypatch, token)
