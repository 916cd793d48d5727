"""End to end through a real nats-server and a real daemon process into a SQLite file."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
import zlib

import msgspec

from telemetry_core.store import open_store
from tests.daemon.conftest import consumer_state, dlq_messages, publish_all, wait_until

NS = 10**9


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def test_mixed_stream_stores_exactly_the_valid_readings(nats_server, daemons, sqlite_url):
    now_s = int(time.time()) - 60
    t = now_s * NS
    subj = "iot.energy.site-a.meter-1"
    expected: dict[tuple, float] = {}  # (device, field, time_ns) -> value

    def expect(device, fields: dict, ts_ns: int):
        for f, v in fields.items():
            expected[(device, f, ts_ns)] = float(v)

    msgs = []
    # 50 good single readings on 5 devices, epoch seconds
    for i in range(50):
        dev = f"meter-{i % 5}"
        fields = {"power_w": 100.0 + i, "energy_kwh": 0.01 * i}
        msgs.append(
            (
                f"iot.energy.site-a.{dev}",
                _j({"timestamp": now_s - i, **fields}),
                {"Nats-Msg-Id": f"g{i}"},
            )
        )
        expect(dev, fields, (now_s - i) * NS)
    # a batched message: list of 3 readings, RFC 3339 with nanoseconds
    batch = [{"timestamp": f"2026-01-01T00:00:0{k}.123456789Z", "power_w": k} for k in range(3)]
    batch = [
        {
            **b,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(now_s))
            + f"{k:02d}.123456789Z",
        }
        for k, b in enumerate(batch)
    ]
    msgs.append((subj, _j(batch), {"Nats-Msg-Id": "batch-1"}))
    minute = (now_s // 60) * 60
    for k in range(3):
        expect("meter-1", {"power_w": k}, (minute + k) * NS + 123456789)
    # the seed-003 form with a top-level ms timestamp, msgpack + gzip
    form3 = {
        "timestamp": t // 10**6,
        "site_id": "site-a",
        "device_id": "meter-9",
        "readings": [
            {"name": "voltage", "value": 230.5, "unit": "V", "quality": "good"},
            {"name": "relay", "value": True},
        ],
    }
    msgs.append(
        (
            "iot.energy.site-a.meter-9",
            gzip.compress(msgspec.msgpack.encode(form3)),
            {
                "Content-Type": "application/msgpack",
                "Content-Encoding": "gzip",
                "Nats-Msg-Id": "f3",
            },
        )
    )
    expect("meter-9", {"voltage": 230.5, "relay": 1.0}, (t // 10**6) * 10**6)
    # deflate JSON, microsecond epoch
    msgs.append(
        (
            "iot.energy.site-a.meter-8",
            zlib.compress(_j({"timestamp": t // 1000, "power_w": 7.25})),
            {"Content-Encoding": "deflate", "Nats-Msg-Id": "defl"},
        )
    )
    expect("meter-8", {"power_w": 7.25}, (t // 1000) * 1000)
    # duplicate by Nats-Msg-Id: dropped by the stream's duplicate window
    msgs.append(
        (
            "iot.energy.site-a.meter-0",
            _j({"timestamp": now_s, "power_w": -1.0}),
            {"Nats-Msg-Id": "g0"},
        )
    )
    # the same reading re-sent under a new id: stored once (upsert by identity)
    msgs.append(
        (
            "iot.energy.site-a.meter-0",
            _j({"timestamp": now_s, "power_w": 100.0, "energy_kwh": 0.0}),
            {"Nats-Msg-Id": "again"},
        )
    )
    # a partial message: one good reading, one NaN
    msgs.append(
        (
            "iot.energy.site-b.meter-1",
            b'[{"timestamp": %d, "power_w": 5}, {"timestamp": %d, "power_w": NaN}]'
            % (now_s, now_s),
            {"Nats-Msg-Id": "partial"},
        )
    )
    expect(("site-b", "meter-1"), {"power_w": 5}, now_s * NS)
    bad = {
        "undecodable": b"\xff\x00garbage",
        "missing_timestamp": _j({"power_w": 1}),
        "non_finite": b'{"timestamp": %d, "power_w": Infinity}' % now_s,
        "non_numeric": _j({"timestamp": now_s, "power_w": "high"}),
        "no_fields": _j({"timestamp": now_s, "site_id": "site-a"}),
        "bad_identifier": _j({"timestamp": now_s, "power w": 1}),
        "subject_mismatch": _j({"timestamp": now_s, "site_id": "site-z", "power_w": 1}),
        "future_timestamp": _j({"timestamp": now_s + 3600, "power_w": 1}),
        "too_old": _j({"timestamp": now_s - 40 * 86400, "power_w": 1}),
        "too_large": _j({"timestamp": now_s, "power_w": 1, "pad": "x" * 5000}),
        "bad_timestamp": _j({"timestamp": "yesterday", "power_w": 1}),
        "bad_payload": _j(42),
    }
    for reason, payload in bad.items():
        msgs.append(
            (f"iot.energy.site-a.bad-{reason.replace('_', '-')}", payload, {"Nats-Msg-Id": reason})
        )
    msgs.append(
        (
            "iot.energy.site-a",
            _j({"timestamp": now_s, "power_w": 1}),
            {"Nats-Msg-Id": "short-subject"},
        )
    )

    daemon = daemons(TELEMETRY_MAX_PAYLOAD_BYTES="4096").start()
    asyncio.run(publish_all(nats_server.url, msgs))
    sent = len(msgs) - 1  # one was a stream-level duplicate
    wait_until(
        lambda: (
            sum(
                daemon.metric("telemetry_ingest_messages_total", outcome=o)
                for o in ("stored", "partial", "dead_lettered")
            )
            >= sent
        ),
        30,
        "all messages",
    )
    wait_until(lambda: asyncio.run(consumer_state(nats_server.url))["ack_pending"] == 0, 10, "acks")

    store = open_store(sqlite_url)
    rows = store.read_points(0, 2**62).rows(named=True)
    got = {}
    for r in rows:
        device = r["device_id"] if r["site_id"] == "site-a" else (r["site_id"], r["device_id"])
        key = (device, r["field"], r["time"])
        assert key not in got, f"stored twice: {key}"
        got[key] = r["value"]
    assert got == expected

    dlq = asyncio.run(dlq_messages(nats_server.url))
    reasons = {h["Telemetry-Original-Subject"]: h["Telemetry-Reason"] for _, h, _ in dlq}
    for reason in bad:
        assert reasons[f"iot.energy.site-a.bad-{reason.replace('_', '-')}"] == reason
    assert reasons["iot.energy.site-a"] == "bad_subject"
    assert reasons["iot.energy.site-b.meter-1"] == "non_finite"
    assert len(dlq) == len(bad) + 2
    partial = next(
        h for _, h, _ in dlq if h["Telemetry-Original-Subject"] == "iot.energy.site-b.meter-1"
    )
    assert partial["Telemetry-Outcome"] == "partial"
    [rejected] = json.loads(partial["Telemetry-Rejected"])
    assert (rejected["index"], rejected["reason"]) == (1, "non_finite")
    assert partial["Telemetry-Stored-Readings"] == "1"
    body = next(d for _, h, d in dlq if h["Telemetry-Reason"] == "undecodable")
    assert body == bad["undecodable"], "the dead letter keeps the original bytes"

    m = daemon.metric
    assert m("telemetry_ingest_messages_total", outcome="partial") == 1
    assert m("telemetry_ingest_messages_total", outcome="dead_lettered") == len(bad) + 1
    assert m("telemetry_ingest_messages_total", outcome="stored") == sent - len(bad) - 2
    # readings: 50 + 3 + 2 (form 3) + 1 (deflate) + 1 (re-sent) + 1 (partial's good one)
    assert m("telemetry_ingest_readings_stored_total") == 58
    for reason in bad:
        want = 2 if reason == "non_finite" else 1  # + the partial message's NaN
        assert m("telemetry_ingest_readings_rejected_total", reason=reason) == want, reason
    assert m("telemetry_ingest_readings_rejected_total", reason="bad_subject") == 1
    assert m("telemetry_ingest_store_up") == 1
    assert daemon.health()["status"] == "ok"
    assert daemon.stop() == 0, daemon.log()


def test_random_bytes_never_crash_the_daemon(nats_server, daemons, sqlite_url):
    rng = random.Random(7)
    now_s = int(time.time())
    msgs = []
    for i in range(300):
        choice = rng.random()
        if choice < 0.3:
            payload = rng.randbytes(rng.randint(0, 200))
        elif choice < 0.6:
            payload = _j(
                {
                    "timestamp": rng.choice([now_s, "x", None, -1, 1e30, True]),
                    rng.choice(["a", "b.c", "", "bad key", "x" * 70]): rng.choice(
                        [1, 2.5, "s", None, [1], {"a": 1}, True]
                    ),
                }
            )
        else:
            payload = _j(
                [
                    {"timestamp": now_s - rng.randint(0, 100), "v": rng.random()}
                    for _ in range(rng.randint(0, 5))
                ]
            )
        headers = {"Content-Encoding": rng.choice(["", "gzip", "deflate", "br"])}
        msgs.append((f"iot.m.site-{i % 3}.dev-{i % 7}", payload, headers))
    daemon = daemons().start()
    asyncio.run(publish_all(nats_server.url, msgs))

    def total():
        return sum(
            daemon.metric("telemetry_ingest_messages_total", outcome=o)
            for o in ("stored", "partial", "dead_lettered")
        )

    wait_until(lambda: total() >= len(msgs), 30, "every message finished")
    assert total() == len(msgs)
    state = asyncio.run(consumer_state(nats_server.url))
    assert state["pending"] == 0 and state["ack_pending"] == 0
    dlq = asyncio.run(dlq_messages(nats_server.url))
    finished_with_dlq = daemon.metric(
        "telemetry_ingest_messages_total", outcome="partial"
    ) + daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered")
    assert len(dlq) == finished_with_dlq
    assert daemon.proc.poll() is None, "daemon still running"
