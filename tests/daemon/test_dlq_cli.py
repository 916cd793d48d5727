"""``telemetry dlq list|replay`` end to end: real nats-server, real daemon, real letters.

The fix that makes letters storable is a setting (the payload size limit), so the replayed
bytes are exactly the original ones; a letter that is still bad comes back as a new letter.
"""

from __future__ import annotations

import asyncio
import json
import time

from telemetry_core.store import open_store
from telemetry_core.timeutil import format_rfc3339
from tests.daemon.conftest import dlq_messages, publish_all, telemetry, wait_until


def _big(t_ns: int, device: str) -> tuple[str, bytes, dict]:
    readings = [{"timestamp": format_rfc3339(t_ns + i * 10**9), "power_w": 100.0 + i}
                for i in range(10)]  # fmt: skip
    return f"iot.energy.site-a.{device}", json.dumps(readings).encode(), {}


def _count(store_url: str) -> int:
    store = open_store(store_url)
    try:
        return store.read_points(0, 2**62).height
    finally:
        store.close()


def test_list_fix_and_replay(nats_server, daemons, sqlite_url):
    now = time.time_ns() - 60 * 10**9
    daemon = daemons(TELEMETRY_MAX_PAYLOAD_BYTES="200").start()
    messages = [_big(now, "m1"), _big(now, "m2"), ("iot.energy.site-a.m3", b"\xff not json", {})]
    asyncio.run(publish_all(nats_server.url, messages))
    wait_until(lambda: len(asyncio.run(dlq_messages(nats_server.url))) == 3, 30, "3 dead letters")
    env = {"TELEMETRY_NATS_URL": nats_server.url}

    out = telemetry("dlq", "list", "--format", "json", **env)
    assert out.returncode == 0, out.stderr
    letters = json.loads(out.stdout)
    assert [set(x) for x in letters] == [
        {"seq", "time", "subject", "reasons", "size", "preview"}
    ] * 3
    assert [x["reasons"] for x in letters] == [["too_large"], ["too_large"], ["undecodable"]]
    assert [x["subject"] for x in letters] == [m[0] for m in messages]
    assert [x["size"] for x in letters] == [len(m[1]) for m in messages]
    assert letters[0]["preview"].startswith('[{"timestamp"')

    only = json.loads(telemetry("dlq", "list", "--reason", "undecodable", "--format", "json",
                                **env).stdout)  # fmt: skip
    assert [x["seq"] for x in only] == [letters[2]["seq"]]
    assert json.loads(telemetry("dlq", "list", "--limit", "1", "--format", "json",
                                **env).stdout)[0]["seq"] == letters[0]["seq"]  # fmt: skip

    dry = telemetry("dlq", "replay", "--dry-run", **env)
    assert dry.returncode == 0 and "would replay 3" in dry.stdout
    assert len(asyncio.run(dlq_messages(nats_server.url))) == 3  # nothing deleted

    # The fix: a daemon with the default payload limit. Then replay everything.
    daemon.stop()
    daemons().start()
    out = telemetry("dlq", "replay", **env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "replayed 3, failed 0"
    wait_until(lambda: _count(sqlite_url) == 20, 30, "the 20 fixed readings stored")

    def back() -> list:
        return asyncio.run(dlq_messages(nats_server.url))

    wait_until(lambda: len(back()) == 1, 30, "the still-bad letter back as a new letter")
    left = json.loads(telemetry("dlq", "list", "--format", "json", **env).stdout)
    assert len(left) == 1 and left[0]["reasons"] == ["undecodable"]
    assert left[0]["seq"] > letters[2]["seq"]  # a new letter, not the old one kept


def test_replay_failure_exits_1_and_keeps_the_letter(nats_server, daemons):
    async def fake_letter() -> None:
        import nats

        from ingest_daemon.jetstream import ensure_streams

        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await ensure_streams(js)
        await js.publish(
            "dlq.iot.energy.site-a.m1",
            b"{}",
            headers={"Telemetry-Reason": "no_fields", "Telemetry-Original-Subject": "elsewhere.x"},
        )
        await nc.close()

    asyncio.run(fake_letter())
    out = telemetry("dlq", "replay", TELEMETRY_NATS_URL=nats_server.url)
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == "replayed 0, failed 1"
    assert "elsewhere.x" in out.stderr
    assert len(asyncio.run(dlq_messages(nats_server.url))) == 1


def test_cli_mistakes_are_one_line(nats_server):
    env = {"TELEMETRY_NATS_URL": nats_server.url}
    for args in (("dlq", "list", "--reason", "nope"), ("dlq", "list", "--since", "later"),
                 ("dlq", "replay", "--limit", "0")):  # fmt: skip
        out = telemetry(*args, **env)
        assert out.returncode == 2, out
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = telemetry("dlq", "list", TELEMETRY_NATS_URL="nats://127.0.0.1:1")
    assert out.returncode == 2 and "cannot connect to NATS" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
