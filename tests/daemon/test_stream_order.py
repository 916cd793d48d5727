"""Last write wins in stream order, whatever order messages are delivered or committed in.

Real nats-server, real daemon processes, one store: a SQLite file, or a PostgreSQL
database (where the database itself keeps stream order: any number of daemons may write).
Expectations are computed from
what was published, in publish order (one connection publishing with acks: the stream
order is the publish order, which the acks' sequences confirm), never from the store.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import pytest

from telemetry_core.store import open_store
from tests.daemon.conftest import consumer_state, create_consumer, publish_all, wait_until

pytestmark = pytest.mark.slow
NS = 10**9
Identity = tuple[str, str, str, str, int]  # measurement, site, device, field, time


@dataclass
class Plan:
    """Messages to publish and what the store must hold afterwards."""

    messages: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    duplicate: list[bool] = field(default_factory=list)  # dropped by the dedup window
    expected: dict[Identity, float] = field(default_factory=dict)
    rewrites: set[Identity] = field(default_factory=set)  # identities written twice or more
    msg_ids: set[str] = field(default_factory=set)

    def add(self, subject: str, ts: int, value: float, msg_id: str) -> None:
        payload = {"timestamp": ts, "power_w": value, "energy_kwh": value / 1000}
        self.messages.append((subject, json.dumps(payload).encode(), {"Nats-Msg-Id": msg_id}))
        self.duplicate.append(msg_id in self.msg_ids)
        if msg_id in self.msg_ids:
            return  # the stream drops it: it must leave no trace
        self.msg_ids.add(msg_id)
        _, measurement, site, device = subject.split(".")
        for fld, v in (("power_w", value), ("energy_kwh", value / 1000)):
            ident = (measurement, site, device, fld, ts)
            if ident in self.expected:
                self.rewrites.add(ident)
            self.expected[ident] = v  # later in the stream: wins

    @property
    def readings(self) -> int:
        return sum(not d for d in self.duplicate)


def rewrite_plan(
    n: int, prefix: str, *, rewrites: tuple[tuple[int, int, int], ...], dup_every: int = 0
) -> Plan:
    """``n`` single-reading messages on 50 devices; message ``i`` with ``i % period ==
    offset`` rewrites (new value, new message id) the identity of message ``i - back``;
    every ``dup_every``-th message is followed by a message reusing its ``Nats-Msg-Id``
    with other content, which the stream's duplicate window must drop."""
    plan = Plan()
    base = (int(time.time()) - 3600) * NS
    identity_of: list[tuple[str, int]] = []
    for i in range(n):
        target = next((i - b for p, o, b in rewrites if i % p == o and i >= b), None)
        if target is not None:
            subject, ts = identity_of[target]
        else:
            dev = i % 50
            subject, ts = f"iot.energy.site-{dev % 3}.{prefix}-{dev}", base + i * 1000
        identity_of.append((subject, ts))
        plan.add(subject, ts, float(i), f"{prefix}{i}")
        if dup_every and i % dup_every == dup_every - 1:
            plan.add(subject, ts + 1, -1e6 - i, f"{prefix}{i}")  # same id, other content
    return plan


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Every test runs on each store the daemons may share."""
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


def publish_checked(url: str, plan: Plan) -> None:
    acks = asyncio.run(publish_all(url, plan.messages))
    assert [bool(a.duplicate) for a in acks] == plan.duplicate, "dedup window as modelled"
    seqs = [a.seq for a, dup in zip(acks, plan.duplicate, strict=True) if not dup]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "stream order = publish order"


def stored(url: str) -> dict[Identity, float]:
    store = open_store(url)
    try:
        rows = store.read_points(0, 2**62).rows()
    finally:
        store.close()
    return {(m, s, d, f, t): v for t, m, s, d, f, v in rows}


def assert_last_values(url: str, plan: Plan) -> None:
    got = stored(url)
    missing = plan.expected.keys() - got.keys()
    extra = got.keys() - plan.expected.keys()
    wrong = sorted(k for k in plan.expected.keys() & got.keys() if got[k] != plan.expected[k])
    assert not missing and not extra, f"{len(missing)} missing, {len(extra)} extra"
    assert not wrong, (
        f"{len(wrong)} identities hold an older value, of {len(plan.rewrites)} rewritten: "
        f"{[(k, got[k], plan.expected[k]) for k in wrong[:5]]}"
    )


def all_acked(url: str) -> bool:
    state = asyncio.run(consumer_state(url))
    return state["pending"] == 0 and state["ack_pending"] == 0


def test_redelivered_older_message_leaves_the_newer_value(nats_server, daemons, store_url):
    """A daemon is killed holding the older message unacknowledged; another commits the
    rewrite; JetStream redelivers the older message after ``ack_wait``: the rewrite stays."""
    asyncio.run(create_consumer(nats_server.url, ack_wait_s=20))
    plan = Plan()
    ts = (int(time.time()) - 60) * NS
    plan.add("iot.energy.site-a.meter-1", ts, 1.0, "older")
    plan.add("iot.energy.site-a.meter-1", ts, 2.0, "newer")
    # A batch that waits ten minutes: the first daemon holds whatever it receives.
    holder = daemons(
        store_url=store_url, TELEMETRY_BATCH_MAX_DELAY_MS="600000", TELEMETRY_BATCH_SIZE="100000"
    )
    holder.start()
    older, newer = plan.messages
    acks = asyncio.run(publish_all(nats_server.url, [older]))
    wait_until(lambda: holder.health()["held_messages"] == 1, 30, "the older message held")
    holder.kill()
    acks += asyncio.run(publish_all(nats_server.url, [newer]))
    assert acks[0].seq < acks[1].seq

    second = daemons(store_url=store_url).start()
    wait_until(
        lambda: second.metric("telemetry_ingest_messages_total", outcome="stored") >= 1,
        30,
        "the rewrite committed",
    )
    assert second.metric("telemetry_ingest_redelivered_total") == 0, (
        "precondition: the rewrite must commit before the older message comes back"
    )
    assert stored(store_url) == plan.expected
    wait_until(
        lambda: (
            second.metric("telemetry_ingest_redelivered_total") >= 1
            and second.metric("telemetry_ingest_messages_total", outcome="stored") >= 2
        ),
        60,
        "the older message redelivered after ack_wait and finished",
    )
    wait_until(lambda: all_acked(nats_server.url), 30, "everything acknowledged")
    assert stored(store_url) == plan.expected  # ts -> 2.0 and 0.002, not 1.0
    assert second.stop() == 0, second.log()


def test_two_daemons_interleaving_rewrites_end_with_the_streams_last_values(
    nats_server, daemons, store_url
):
    """Every 100th message rewrites the identity of the message two before it; two daemons
    on one durable commit batches in any order."""
    plan = rewrite_plan(30_000, "two", rewrites=((100, 0, 2),))
    assert len(plan.rewrites) == 2 * 299  # two fields each
    a = daemons(store_url=store_url, TELEMETRY_BATCH_SIZE="200").start()
    b = daemons(store_url=store_url, TELEMETRY_BATCH_SIZE="200").start()
    publish_checked(nats_server.url, plan)
    wait_until(lambda: all_acked(nats_server.url), 120, "every message acknowledged")
    done = [d.metric("telemetry_ingest_messages_total", outcome="stored") for d in (a, b)]
    assert min(done) > 0 and sum(done) == plan.readings, done
    assert_last_values(store_url, plan)
    assert a.stop() == 0 and b.stop() == 0


def test_kill_9_with_rewrites_and_duplicates_keeps_stream_order(nats_server, daemons, store_url):
    """kill -9 twice mid-stream; messages in flight at a kill come back after ``ack_wait``,
    after later rewrites of their identities were committed (rewrites 2, 500 and 5,000
    messages later); duplicate ``Nats-Msg-Id``s with other content leave no trace."""
    asyncio.run(create_consumer(nats_server.url, ack_wait_s=5))
    plan = rewrite_plan(
        40_000, "k", rewrites=((100, 0, 2), (100, 25, 500), (100, 50, 5000)), dup_every=41
    )
    publish_checked(nats_server.url, plan)
    env = {"TELEMETRY_BATCH_SIZE": "500"}
    killed = 0
    for share in (0.25, 0.6):
        daemon = daemons(store_url=store_url, **env).start()
        wait_until(
            lambda d=daemon, s=share: (
                d.metric("telemetry_ingest_readings_stored_total") >= s * plan.readings
            ),
            120,
            f"{share:.0%} of the stream stored",
            interval=0.02,
        )
        daemon.kill()
        killed += 1
    assert not all_acked(nats_server.url), "killed mid-stream"
    last = daemons(store_url=store_url, **env).start()
    wait_until(lambda: all_acked(nats_server.url), 180, "every message acknowledged")
    assert killed == 2 and last.metric("telemetry_ingest_redelivered_total") > 0
    assert_last_values(store_url, plan)
    assert last.stop() == 0
