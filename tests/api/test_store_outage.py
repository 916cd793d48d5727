"""A store that cannot answer is a 503 with ``Retry-After``, never a 500: real outages
under a real ``telemetry api`` process.

* an SQLite file that stops being a database after the server started (overwritten);
* an ``influxdb://`` URL whose port nothing listens on.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from telemetry_core.store import open_store
from tests.api.conftest import CONFIG, serve_api
from tests.conftest import free_port

QUERIES = [
    "/v1/series?measurement=energy&field=power_w&start=-2h",
    "/v1/series?measurement=energy&field=power_w&scope=site&start=-2d",
    "/v1/top?measurement=energy&field=energy_kwh&start=-30d",
]


def answer(url: str) -> tuple[int, Message, object]:
    """Status, headers (names case-insensitive) and JSON body."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def assert_unavailable(base: str, paths: list[str]) -> None:
    for path in paths:
        status, headers, body = answer(base + path)
        assert status == 503, (path, status, body)
        assert int(headers.get("Retry-After", "0")) >= 1, dict(headers)
        assert isinstance(body, dict) and set(body) == {"error", "parameter"}, body
        assert body["parameter"] is None and "store is unavailable" in body["error"], body
    status, headers, body = answer(base + "/health")
    assert status == 503 and int(headers.get("Retry-After", "0")) >= 1, (status, dict(headers))
    assert isinstance(body, dict) and body["status"] == "error" and not body["store"]["up"]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.toml"
    path.write_text(CONFIG)
    return path


def test_an_sqlite_file_that_is_no_longer_a_database(tmp_path: Path, config_path: Path):
    db = tmp_path / "telemetry.db"
    store_url = f"sqlite:///{db}"
    open_store(store_url).close()
    with serve_api(store_url, config_path, free_port()) as base:  # starts on a sound file
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        db.write_bytes(b"not a database " * 4096)  # a disk that returned garbage
        assert_unavailable(base, [*QUERIES, "/v1/alerts"])


def test_an_influxdb_url_nothing_listens_on(tmp_path: Path, config_path: Path, monkeypatch):
    monkeypatch.setenv("TELEMETRY_ALERTS_DB", str(tmp_path / "alerts.db"))
    store_url = f"influxdb://127.0.0.1:{free_port()}/telemetry"
    with serve_api(store_url, config_path, free_port()) as base:
        assert_unavailable(base, QUERIES)
        status, _, body = answer(base + "/v1/series?measurement=energy&field=power_w&end=x")
        assert status == 400 and body["parameter"] == "end"  # bad input stays the client's
