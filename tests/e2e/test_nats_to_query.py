"""The whole path: NATS -> ingest daemon -> SQLite -> Dagster rollups -> `telemetry query`.

Readings sit exactly on a window boundary, 1 ns before the next one, and on identical
timestamps across devices; every value is checked against a hand computation.
"""

from __future__ import annotations

import asyncio
import json
import time

import dagster as dg
import pytest

from telemetry_core.timeutil import format_rfc3339
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, partition_key, window_start
from tests.daemon.conftest import publish_all, telemetry, wait_until

pytestmark = pytest.mark.slow
NS = 10**9

CONFIG = """
[sites.site-a]
timezone = "UTC"
work_hours = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start = "00:00", end = "23:59" }

[fields]
"energy.energy_kwh" = "delta"
"""


def test_nats_to_dagster_to_query(nats_server, daemons, sqlite_url, tmp_path, monkeypatch):
    config = tmp_path / "telemetry.toml"
    config.write_text(CONFIG)
    hour = window_start(time.time_ns() - 3 * HOUR_NS, HOUR_NS)
    w0, w1 = hour, hour + WINDOW_15M_NS
    # (device, time, power_w, energy_kwh)
    readings = [
        ("m1", w0, 100.0, 0.5),  # exactly on the boundary: belongs to w0
        ("m2", w0, 300.0, 0.25),  # same timestamp, another device
        ("m1", w1 - 1, 200.0, 0.5),  # 1 ns before the next window
        ("m1", w1, 50.0, 1.0),  # first instant of w1
    ]
    msgs = [
        (
            f"iot.energy.site-a.{dev}",
            json.dumps({"timestamp": t, "power_w": p, "energy_kwh": e}).encode(),
            None,
        )
        for dev, t, p, e in readings
    ]
    daemon = daemons(TELEMETRY_CONFIG=str(config)).start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(
        lambda: daemon.metric("telemetry_ingest_readings_stored_total") == 4, 30, "readings stored"
    )

    monkeypatch.setenv("TELEMETRY_STORE_URL", sqlite_url)
    monkeypatch.setenv("TELEMETRY_CONFIG", str(config))
    from telemetry_assets.definitions import defs as load_defs

    defs = load_defs()  # the code location as Dagster loads it, from this environment
    with dg.DagsterInstance.ephemeral() as instance:
        for key in (partition_key(w0), partition_key(w1)):
            result = defs.resolve_job_def("rollup_15m_job").execute_in_process(
                instance=instance, partition_key=key
            )
            assert result.success
        result = defs.resolve_job_def("rollup_1h_job").execute_in_process(
            instance=instance, partition_key=partition_key(hour)
        )
        assert result.success

    def query(*args: str) -> list[dict]:
        out = telemetry(
            "query", "--measurement", "energy", "--start", format_rfc3339(hour),
            "--end", format_rfc3339(hour + HOUR_NS), "--format", "json", *args,
            TELEMETRY_STORE_URL=sqlite_url, TELEMETRY_CONFIG=str(config),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    quarters = query("--field", "power_w", "--resolution", "15m")
    by_key = {(r["window_start"], r["device_id"]): r for r in quarters}
    m1 = by_key[(format_rfc3339(w0), "m1")]
    assert m1["window_end"] == format_rfc3339(w1)
    assert (m1["count"], m1["sum"], m1["min"], m1["max"], m1["mean"]) == (
        2,
        300.0,
        100.0,
        200.0,
        150.0,
    )
    assert (m1["first"], m1["last"], m1["is_work_hours"]) == (100.0, 200.0, True)
    assert by_key[(format_rfc3339(w1), "m1")]["count"] == 1
    assert len(quarters) == 3

    site = query("--field", "power_w", "--resolution", "15m", "--scope", "site")
    first = next(r for r in site if r["window_start"] == format_rfc3339(w0))
    assert "device_id" not in first and first["site_id"] == "site-a"
    # identical timestamps on m1 and m2: first follows the device order (m1), last is m1's 200
    assert (first["count"], first["sum"], first["first"], first["last"]) == (3, 600.0, 100.0, 200.0)

    hourly = query("--field", "energy_kwh", "--resolution", "1h", "--scope", "portfolio")
    assert len(hourly) == 1
    row = hourly[0]
    assert (row["count"], row["sum"], row["site_id"]) == (4, 2.25, None)
    assert "is_work_hours" not in row and "device_id" not in row
    assert row["window_start"] == format_rfc3339(hour) and row["window_end"] == format_rfc3339(
        hour + HOUR_NS
    )
