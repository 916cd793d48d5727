"""What users see: `telemetry query` output after real ingest, late marks, the demo."""

from __future__ import annotations

import asyncio
import json
import time

from telemetry_core.store import open_store
from telemetry_core.windows import WINDOW_15M_NS, window_start
from tests.conftest import free_port
from tests.daemon.conftest import publish_all, telemetry, wait_until

NS = 10**9


def test_query_returns_exactly_what_went_in(nats_server, daemons, sqlite_url):
    base = (time.time_ns() // NS - 600) * NS
    stamps = [base + 999_999_999, base + NS, base + 2 * NS + 1]
    msgs = [
        (
            "iot.energy.site-a.meter-1",
            json.dumps({"timestamp": t, "power_w": 100.0 + i}).encode(),
            None,
        )
        for i, t in enumerate(stamps)
    ]
    msgs.append(
        (
            "iot.energy.site-a.meter-2",
            json.dumps({"timestamp": base, "power_w": 1.5}).encode(),
            None,
        )
    )
    daemon = daemons().start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(lambda: daemon.metric("telemetry_ingest_readings_stored_total") == 4, 20, "stored")
    result = telemetry(
        "query", "--measurement", "energy", "--field", "power_w", "--start", "-1h",
        "--resolution", "raw", "--site", "site-a", "--device", "meter-1", "--format", "json",
        TELEMETRY_STORE_URL=sqlite_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(r) for r in rows] == [
        {"time", "measurement", "site_id", "device_id", "field", "value"}
    ] * 3
    secs = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base // NS))
    assert rows[0]["time"] == f"{secs}.999999999Z"
    assert rows[2]["time"].endswith(".000000001Z")
    assert [r["value"] for r in rows] == [100.0, 101.0, 102.0]
    assert {(r["site_id"], r["device_id"], r["field"]) for r in rows} == {
        ("site-a", "meter-1", "power_w")
    }
    csv_out = telemetry(
        "query", "--measurement", "energy", "--field", "power_w", "--start", "-1h", "--resolution", "raw",
        "--format", "csv", TELEMETRY_STORE_URL=sqlite_url,
    )  # fmt: skip
    assert csv_out.stdout.splitlines()[0] == "time,measurement,site_id,device_id,field,value"
    assert len(csv_out.stdout.splitlines()) == 5


def test_late_readings_mark_their_window(nats_server, daemons, sqlite_url):
    now = time.time_ns()
    old = now - 3600 * NS  # an hour ago: far past its window's grace period
    fresh = now - NS
    msgs = [
        (
            "iot.hvac.site-b.zone-1",
            json.dumps({"timestamp": old, "temperature_c": 20.5}).encode(),
            None,
        ),
        (
            "iot.hvac.site-b.zone-1",
            json.dumps({"timestamp": fresh, "temperature_c": 21.0}).encode(),
            None,
        ),
    ]
    daemon = daemons().start()
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(lambda: daemon.metric("telemetry_ingest_readings_stored_total") == 2, 20, "stored")
    marks = open_store(sqlite_url).late_windows(10)
    assert [(m.window_start, m.site_id, m.points) for m in marks] == [
        (window_start(old), "site-b", 1)
    ]
    assert daemon.metric("telemetry_ingest_late_windows_marked_total") == 1
    # A window already rolled up is late even inside its grace period.
    store = open_store(sqlite_url)
    import polars as pl

    store.replace_rollups(
        "15m", window_start(fresh), window_start(fresh) + WINDOW_15M_NS, pl.DataFrame()
    )
    asyncio.run(publish_all(nats_server.url, [
        ("iot.hvac.site-b.zone-2", json.dumps({"timestamp": fresh, "temperature_c": 19.0}).encode(), None)
    ]))  # fmt: skip
    wait_until(lambda: daemon.metric("telemetry_ingest_readings_stored_total") == 3, 20, "stored")
    starts = [m.window_start for m in store.late_windows(10)]
    assert starts == [window_start(fresh), window_start(old)], "newest window first"


def test_demo_runs_the_system_and_stops_cleanly(tmp_path):
    """The demo stores simulated readings; SIGTERM stops it with exit 0. Waits on the
    store, not on a fixed duration (a slow machine only makes it wait longer)."""
    import os
    import signal
    import subprocess
    import sys

    state = tmp_path / "state"
    env = {**os.environ}
    env.pop("TELEMETRY_CONFIG", None)
    env.pop("TELEMETRY_STORE_URL", None)
    env["TELEMETRY_MQTT_PORT"] = str(free_port())  # 1883 may be another broker's
    demo = subprocess.Popen(
        [sys.executable, "-m", "telemetry_cli", "demo", "--state-dir", str(state),
         "--no-dagster", "--rate", "100", "--api-port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    db = state / "telemetry.db"

    def stored() -> int:
        if not db.exists():
            return 0
        store = open_store(f"sqlite:///{db}")
        try:
            return store.read_points(0, 2**62).height
        finally:
            store.close()

    try:
        wait_until(lambda: demo.poll() is not None or stored() > 100, 120, "stored readings")
        assert demo.poll() is None, demo.communicate()
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, err + out
    assert "stored" in out
    assert (state / "demo.toml").exists() and (state / "logs" / "ingest.log").exists()
    assert "Traceback" not in (state / "logs" / "ingest.log").read_text()
