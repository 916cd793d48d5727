"""Retention on ``influxdb://`` works on the server or the code location refuses to load
(not the daily job at 03:30): ``defs()`` asks the server (``/ping``) while ``[retention]``
is on. The server is the fake of tests/core/test_lineprotocol.py answering as 3.x."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from http.server import ThreadingHTTPServer

import pytest

from tests.core.test_lineprotocol import FakeInflux, _handler

LOAD = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("ignore")
    from telemetry_assets.definitions import defs
    d = defs()
    print(sorted(s.name for s in d.schedules))
    """
)


@pytest.fixture
def influx3():
    state = FakeInflux(version="3.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def _load(tmp_path, port: int, toml: str) -> subprocess.CompletedProcess:
    config = tmp_path / "telemetry.toml"
    config.write_text(toml)
    env = {
        **os.environ,
        "TELEMETRY_CONFIG": str(config),
        "TELEMETRY_STORE_URL": f"influxdb://127.0.0.1:{port}/telemetry",
        "INFLUXDB_TOKEN": "t",
    }
    return subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, timeout=120
    )


def test_retention_on_influxdb_3_fails_the_load_in_one_line(tmp_path, influx3):
    out = _load(tmp_path, influx3.port, "")
    assert out.returncode != 0
    (line,) = [x for x in out.stderr.splitlines() if "cannot delete points" in x]
    assert "InfluxDB 3.0.1" in line and "[retention] enabled = false" in line
    assert influx3.paths() == ["/ping"]


def test_with_retention_off_it_loads_without_the_schedule(tmp_path, influx3):
    out = _load(tmp_path, influx3.port, "[retention]\nenabled = false\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['rollup_15m_schedule']"
    assert influx3.paths() == []  # nothing asked: retention is off
