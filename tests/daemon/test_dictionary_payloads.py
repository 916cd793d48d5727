"""Dictionary payloads through a real daemon: integer keys stored under the field names of
the config's ``[dictionaries.<name>]``; an unknown dictionary or index ends in IOT_DLQ with
its reason header, nothing guessed."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

from telemetry_core.store import open_store
from tests.daemon.conftest import dlq_messages, publish_all, telemetry, wait_until

pytestmark = pytest.mark.slow
TOML = """
[dictionaries.meter-v2]
"0" = "power_w"
"1" = "energy_kwh"
"""


def _points(store_url: str) -> list[tuple[str, str, int, float]]:
    store = open_store(store_url)
    try:
        frame = store.read_points(0, 2**62)
    finally:
        store.close()
    return sorted(
        (r["device_id"], r["field"], r["time"], r["value"]) for r in frame.iter_rows(named=True)
    )


def test_dictionary_payload_is_stored_under_field_names(nats_server, daemons, sqlite_url, tmp_path):
    (tmp_path / "telemetry.toml").write_text(TOML)
    daemon = daemons(TELEMETRY_CONFIG=str(tmp_path / "telemetry.toml")).start()
    now = int(time.time()) - 60
    ns = now * 10**9
    meter = {"Telemetry-Dictionary": "meter-v2"}
    messages = [
        ("iot.energy.site-a.m-1", json.dumps({"timestamp": now, "0": 412.5, "1": 0.103}).encode(),
         meter),
        ("iot.energy.site-a.m-2",
         msgspec.msgpack.encode({"timestamp": now, "readings": [{"name": 1, "value": 7}]}),
         {**meter, "Content-Type": "application/msgpack"}),
        # index 5 is not in meter-v2: that reading refused, the other stored
        ("iot.energy.site-a.m-3",
         json.dumps([{"timestamp": now, "0": 3}, {"timestamp": now, "5": 4}]).encode(), meter),
        ("iot.energy.site-a.m-4", json.dumps({"timestamp": now, "0": 9}).encode(),
         {"Telemetry-Dictionary": "meter-v9"}),
    ]  # fmt: skip
    asyncio.run(publish_all(nats_server.url, messages))
    wait_until(lambda: len(asyncio.run(dlq_messages(nats_server.url))) == 2, 30, "2 letters")
    wait_until(lambda: len(_points(sqlite_url)) == 4, 30, "4 points stored")
    assert _points(sqlite_url) == [
        ("m-1", "energy_kwh", ns, 0.103),
        ("m-1", "power_w", ns, 412.5),
        ("m-2", "energy_kwh", ns, 7.0),
        ("m-3", "power_w", ns, 3.0),
    ]
    letters = {s: (h, d) for s, h, d in asyncio.run(dlq_messages(nats_server.url))}
    headers, data = letters["dlq.iot.energy.site-a.m-4"]
    assert headers["Telemetry-Reason"] == "unknown_dictionary"
    assert headers["Telemetry-Dictionary"] == "meter-v9"  # the original headers kept
    assert data == messages[3][1]  # replayable as sent
    headers, _ = letters["dlq.iot.energy.site-a.m-3"]
    assert headers["Telemetry-Reason"] == "unknown_key"
    metric = daemon.metric
    assert metric("telemetry_ingest_readings_rejected_total", reason="unknown_dictionary") == 1
    assert metric("telemetry_ingest_readings_rejected_total", reason="unknown_key") == 1
    assert daemon.stop() == 0

    # The fix for an unknown dictionary is to configure it; a replay then stores the letter
    # under its field names (the header travelled with the letter); the letter whose index
    # is still unknown comes back (its valid reading is the same point again: upserted).
    (tmp_path / "telemetry.toml").write_text(TOML + '\n[dictionaries.meter-v9]\n"0" = "rh"\n')
    fixed = daemons(TELEMETRY_CONFIG=str(tmp_path / "telemetry.toml")).start()
    out = telemetry("dlq", "replay", TELEMETRY_NATS_URL=nats_server.url)
    assert out.stdout.strip().splitlines()[-1] == "replayed 2, failed 0", out.stderr
    wait_until(lambda: len(_points(sqlite_url)) == 5, 30, "the replayed letter stored")
    assert [p for p in _points(sqlite_url) if p[0] == "m-4"] == [("m-4", "rh", ns, 9.0)]
    wait_until(
        lambda: fixed.metric("telemetry_ingest_readings_rejected_total", reason="unknown_key") == 1,
        30,
        "the still-unknown index refused again",
    )
    [(subject, headers, _)] = asyncio.run(dlq_messages(nats_server.url))
    assert subject == "dlq.iot.energy.site-a.m-3" and headers["Telemetry-Reason"] == "unknown_key"
    assert fixed.stop() == 0
