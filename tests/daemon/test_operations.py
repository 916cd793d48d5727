"""Paths operators rely on, each through a real nats-server and a real daemon process:
poison messages, a store that refuses, /health 503, the shutdown timeout, and the
"in progress" keep-alive during a store outage longer than ``ack_wait``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from tests.daemon.conftest import consumer_state, dlq_messages, publish_all, wait_until

pytestmark = pytest.mark.slow
NS = 10**9


def _msg(device: str, value: float, ts_s: int | None = None, msg_id: str | None = None):
    payload = {"timestamp": ts_s or int(time.time()) - 30, "power_w": value}
    return (
        f"iot.energy.site-a.{device}",
        json.dumps(payload).encode(),
        {"Nats-Msg-Id": msg_id or device},
    )


def _stored(sqlite_url: str) -> dict[str, float]:
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        rows = db.execute(
            "SELECT s.device_id, r.value FROM raw r JOIN series s ON s.id = r.series_id"
        ).fetchall()
    return dict(rows)


def _all_acked(url: str) -> bool:
    state = asyncio.run(consumer_state(url))
    return state["pending"] == 0 and state["ack_pending"] == 0


class StoreLock:
    """The store taken away: another process holds SQLite's write lock."""

    def __init__(self, sqlite_url: str) -> None:
        self.conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


def test_poison_message_is_dead_lettered_as_max_deliveries(nats_server, daemons, sqlite_url):
    """A message that takes its daemon down (here: killed while holding it) comes back;
    past TELEMETRY_MAX_DELIVER deliveries it is dead-lettered instead of stored."""
    env = {"TELEMETRY_ACK_WAIT_S": "2", "TELEMETRY_MAX_DELIVER": "2"}
    poison = _msg("poison", 1.0)
    asyncio.run(publish_all(nats_server.url, [poison]))
    for _ in range(2):
        holder = daemons(TELEMETRY_BATCH_MAX_DELAY_MS="600000", **env).start()
        wait_until(lambda h=holder: h.health()["held_messages"] >= 1, 30, "the message held")
        holder.kill()
    last = daemons(**env).start()
    wait_until(
        lambda: last.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 1,
        30,
        "the poison message dead-lettered",
    )
    wait_until(lambda: _all_acked(nats_server.url), 30, "acknowledged")
    [(subject, headers, body)] = asyncio.run(dlq_messages(nats_server.url))
    assert subject == "dlq." + poison[0] and headers["Telemetry-Reason"] == "max_deliveries"
    assert headers["Telemetry-Original-Subject"] == poison[0] and body == poison[1]
    assert last.metric("telemetry_ingest_readings_rejected_total", reason="max_deliveries") == 1
    assert _stored(sqlite_url) == {}, "never stored"
    assert last.stop() == 0


def test_store_refusing_a_batch_dead_letters_store_rejected(nats_server, daemons, sqlite_url):
    """The store refuses some readings for good (here: a trigger, as an InfluxDB field-type
    conflict would) and says so (``StoreRefused``): the batch is written again message by
    message at once (asking again changes nothing); the refused messages go to IOT_DLQ as
    store_rejected and the rest is stored."""
    daemon = daemons(TELEMETRY_BATCH_MAX_DELAY_MS="1000").start()  # it creates the file
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON raw WHEN NEW.value = 666.0 "
            "BEGIN SELECT RAISE(ABORT, 'value 666 refused by policy'); END"
        )
    msgs = [_msg("m-1", 1.0), _msg("bad-1", 666.0), _msg("m-2", 2.0), _msg("bad-2", 666.0)]
    msgs.append(_msg("m-3", 3.0))
    asyncio.run(publish_all(nats_server.url, msgs))
    wait_until(
        lambda: (
            daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 2
            and daemon.metric("telemetry_ingest_messages_total", outcome="stored") == 3
        ),
        60,
        "every message finished",
    )
    # one refusal of each batch holding a refused message (one, unless a slow publish
    # split them), then one per refused message written alone
    log = daemon.log()
    batches = log.count("store refused a batch")
    assert 1 <= batches <= 2, log
    assert daemon.metric("telemetry_ingest_store_errors_total") == batches + 2
    assert daemon.metric("telemetry_ingest_readings_rejected_total", reason="store_rejected") == 2
    letters = asyncio.run(dlq_messages(nats_server.url))
    assert sorted(h["Telemetry-Original-Subject"] for _, h, _ in letters) == [
        "iot.energy.site-a.bad-1",
        "iot.energy.site-a.bad-2",
    ]
    for _, headers, _ in letters:
        assert headers["Telemetry-Reason"] == "store_rejected"
        assert "value 666 refused by policy" in headers["Telemetry-Error"]
    assert _stored(sqlite_url) == {"m-1": 1.0, "m-2": 2.0, "m-3": 3.0}
    assert log.count("store refused a write") == batches + 2
    assert daemon.metric("telemetry_ingest_faults_total") == 0
    assert daemon.health()["status"] == "ok", "a refusal is not an outage"
    assert daemon.stop() == 0


def test_health_is_503_when_neither_nats_nor_the_store_is_reachable(
    nats_server, daemons, sqlite_url
):
    daemon = daemons().start()
    wait_until(lambda: daemon.health_response()[0] == 200, 30, "healthy")
    lock = StoreLock(sqlite_url)
    nats_server.stop()
    try:
        answers: list[tuple[int, dict]] = []
        try:
            wait_until(
                lambda: answers.append(daemon.health_response()) or answers[-1][0] == 503, 60, "503"
            )
        except AssertionError as exc:  # say what it answered instead
            raise AssertionError(
                f"{exc}; last answer {answers[-1:]}\n{daemon.log()[-3000:]}"
            ) from None
        _, body = daemon.health_response()
        assert body["status"] == "error"
        assert body["nats"]["connected"] is False and body["store"]["up"] is False
        assert body["store"]["error"]
    finally:
        lock.release()
        nats_server.start()
    wait_until(lambda: daemon.health_response() == (200, daemon.health()), 60, "answers 200")
    wait_until(lambda: daemon.health()["status"] == "ok", 60, "ok again")
    assert daemon.stop() == 0


def test_shutdown_timeout_abandons_the_batch_unacknowledged(nats_server, daemons, sqlite_url):
    """SIGTERM while the store is down: after TELEMETRY_SHUTDOWN_TIMEOUT_S the daemon exits
    without acknowledging what it holds; the next daemon stores all of it, once."""
    msgs = [_msg(f"m-{i}", float(i)) for i in range(100)]
    daemon = daemons(TELEMETRY_SHUTDOWN_TIMEOUT_S="2", TELEMETRY_ACK_WAIT_S="3").start()
    lock = StoreLock(sqlite_url)
    try:
        asyncio.run(publish_all(nats_server.url, msgs))
        wait_until(
            lambda: daemon.health()["held_messages"] == 100 and not daemon.health()["store"]["up"],
            60,
            "every message held while the store is down",
        )
        assert daemon.stop(timeout=60) == 0, "exited by itself, not killed"
    finally:
        lock.release()
    assert "shutdown timeout: 1 batches left unacknowledged" in daemon.log()
    assert asyncio.run(consumer_state(nats_server.url))["ack_floor"] == 0, "nothing acked"
    again = daemons().start()
    wait_until(lambda: _all_acked(nats_server.url), 60, "everything acknowledged")
    assert _stored(sqlite_url) == {f"m-{i}": float(i) for i in range(100)}
    assert again.metric("telemetry_ingest_messages_total", outcome="stored") == 100
    assert again.stop() == 0


async def _probe_for_redeliveries(url: str, seconds: float) -> int:
    """Pull from the shared durable for ``seconds``: with every message held by the
    daemon, anything that arrives is a redelivery (acknowledged, so nothing piles up)."""
    import nats

    nc = await nats.connect(url)
    got = 0
    try:
        psub = await nc.jetstream().pull_subscribe_bind("telemetry-ingest", stream="IOT")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(100, timeout=1)
            except TimeoutError:  # nats-py raises its own subclass or the plain one
                continue
            got += len(msgs)
            for m in msgs:
                await m.ack()
    finally:
        await nc.close()
    return got


def test_keepalive_prevents_redelivery_during_an_outage_longer_than_ack_wait(
    nats_server, daemons, sqlite_url
):
    msgs = [_msg(f"m-{i}", float(i)) for i in range(200)]
    daemon = daemons(TELEMETRY_ACK_WAIT_S="3").start()
    lock = StoreLock(sqlite_url)
    try:
        asyncio.run(publish_all(nats_server.url, msgs))
        wait_until(
            lambda: (
                asyncio.run(consumer_state(nats_server.url))
                == {
                    **asyncio.run(consumer_state(nats_server.url)),
                    "pending": 0,
                    "ack_pending": 200,
                }
            ),
            60,
            "every message delivered to the daemon and held",
        )
        # 10 s of outage (over three times ack_wait) while another consumer keeps asking
        redelivered = asyncio.run(_probe_for_redeliveries(nats_server.url, 10))
        assert redelivered == 0, "JetStream redelivered held messages: no keep-alive"
        assert daemon.metric("telemetry_ingest_keepalives_total") >= 3
    finally:
        lock.release()
    wait_until(lambda: _all_acked(nats_server.url), 60, "everything acknowledged")
    assert daemon.metric("telemetry_ingest_redelivered_total") == 0
    assert _stored(sqlite_url) == {f"m-{i}": float(i) for i in range(200)}
    assert daemon.stop() == 0
