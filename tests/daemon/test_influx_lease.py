"""One ingest daemon per InfluxDB database (ingest_daemon/lease.py), on a real nats-server
and a real influxd: a second daemon exits at start with one line; after ``kill -9`` of the
holder a restarted daemon waits for the lease to expire, then takes it; a lease lost while
running stops the writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from telemetry_cli.services import stop_process
from telemetry_core.store import StoreUnavailable, open_store
from tests.conftest import need_service
from tests.daemon.conftest import publish_all, wait_until
from tests.harness.influxd import start_influxd

pytestmark = pytest.mark.slow
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
TAKEN = "writer lease for InfluxDB"
NS = 10**9


@pytest.fixture(scope="module")
def influxd(tmp_path_factory):
    if not Path(INFLUXD).exists():
        need_service(f"influxd not found at {INFLUXD} (apt-get install influxdb)")
    proc, port = start_influxd(INFLUXD, tmp_path_factory.mktemp("influxd"))
    yield port
    stop_process(proc)


@pytest.fixture
def influx_url(influxd):
    return f"influxdb://127.0.0.1:{influxd}/lease_{uuid.uuid4().hex[:10]}"


def _taken(d) -> bool:
    return f"{TAKEN} database" in d.log() and " taken (key " in d.log()


def _stored(url: str, t_ns: int) -> list[float]:
    store = open_store(url)
    try:
        return store.read_points(t_ns - NS, t_ns + NS)["value"].to_list()
    finally:
        store.close()


def _publish_one(nats_url: str, value: float) -> int:
    t = time.time_ns() - 5 * NS
    payload = json.dumps({"timestamp": t, "power_w": value}).encode()
    asyncio.run(publish_all(nats_url, [("iot.energy.site-a.m-1", payload, {})]))
    return t


def test_a_second_daemon_on_the_database_exits_with_one_line(daemons, nats_server, influx_url):
    first = daemons(store_url=influx_url).start()
    wait_until(lambda: _taken(first), 20, "the first daemon to take the lease")
    second = daemons(store_url=influx_url).launch()
    assert second.proc is not None
    code = second.proc.wait(timeout=30)
    errors = [line for line in second.log().splitlines() if "error" in line.lower()]
    assert code == 2, second.log()
    assert "Traceback" not in second.log()
    assert len(errors) == 1 and errors[0].startswith("python -m ingest_daemon: error: ")
    assert "postgresql://" in errors[0] and "another ingest daemon" in errors[0]
    # the holder is unaffected and still writes
    t = _publish_one(nats_server.url, 7.0)
    wait_until(lambda: _stored(influx_url, t) == [7.0], 20, "the holder to store the reading")
    # a clean stop releases the lease: the next daemon takes it at once, without waiting
    assert first.stop() == 0
    third = daemons(store_url=influx_url).start()
    wait_until(lambda: _taken(third), 10, "the lease to be taken after a release")
    assert "waiting up to" not in third.log()


def test_after_kill_9_a_restarted_daemon_waits_for_expiry_then_takes_over(
    daemons, nats_server, influx_url
):
    first = daemons(store_url=influx_url).start()
    wait_until(lambda: _taken(first), 20, "the first daemon to take the lease")
    first.kill()
    killed = time.monotonic()
    second = daemons(store_url=influx_url).start()
    wait_until(lambda: _taken(second), 40, "the restarted daemon to take the lease")
    waited = time.monotonic() - killed
    assert second.log().count("waiting up to") == 1, second.log()
    assert waited > 8, f"took the lease {waited:.1f} s after the kill: before it expired"
    t = _publish_one(nats_server.url, 9.0)
    wait_until(lambda: _stored(influx_url, t) == [9.0], 20, "the new holder to store it")


def test_a_lost_lease_is_a_fault_and_stops_the_writes(nats_server, influx_url):
    """In process: the entry is replaced behind the holder's back (as if it had expired
    and another daemon had taken it); the next refresh reports the loss and no write
    starts after it."""
    import nats

    from ingest_daemon.lease import WriterLease

    async def scenario() -> tuple[list, Exception | None, bool]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        lost: list = []
        store = open_store(influx_url)
        lease = WriterLease.for_store(store, lambda exc, where: lost.append((exc, where)))
        assert lease is not None
        lease.refresh_s = 0.2
        guarded = lease.guard(store)
        await lease.take(js, asyncio.Event())
        t = time.time_ns()
        guarded.write_points([("energy", "site-a", "m-1", "power_w", t, 1.0)], seqs=[1])
        kv = await js.key_value("telemetry_writers")
        await kv.put(lease.key, b'{"host": "other", "pid": 1, "since": "now"}')
        await asyncio.sleep(1.0)
        refused = None
        try:
            guarded.write_points([("energy", "site-a", "m-1", "power_w", t, 2.0)], seqs=[2])
        except StoreUnavailable as exc:
            refused = exc
        await lease.release()
        still_there = (await kv.get(lease.key)).value.startswith(b'{"host": "other"')
        await nc.close()
        store.close()
        return lost, refused, still_there

    lost, refused, still_there = asyncio.run(scenario())
    assert len(lost) == 1 and "lost" in str(lost[0][0])
    assert refused is not None and "lease" in str(refused)
    assert still_there  # release does not delete another holder's entry


def test_no_refresh_before_the_lease_can_expire_is_a_loss(nats_server, influx_url):
    """NATS goes away while the lease is held: writes stop being allowed before the server
    could expire the entry, and the loss is reported (a fault in the daemon). The bucket is
    made with a 3 s TTL first: the lease follows the bucket's own TTL."""
    import nats

    from ingest_daemon.lease import BUCKET, WriterLease

    async def scenario() -> tuple[list, float, bool, bool]:
        nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
        js = nc.jetstream()
        await js.create_key_value(bucket=BUCKET, ttl=3.0, history=1)
        lost: list = []
        store = open_store(influx_url)
        lease = WriterLease.for_store(store, lambda exc, where: lost.append(exc))
        assert lease is not None
        await lease.take(js, asyncio.Event())
        assert lease.ttl_s == 3.0 and lease.valid()
        nats_server.stop()
        stopped = time.monotonic()
        while not lost and time.monotonic() - stopped < 10:
            await asyncio.sleep(0.1)
        allowed = lease.valid()
        refused = False
        try:
            lease.guard(store).write_points([("energy", "s", "d", "f", time.time_ns(), 1.0)])
        except StoreUnavailable:
            refused = True
        after = time.monotonic() - stopped
        nats_server.start()
        with contextlib.suppress(Exception):  # the client may be mid-reconnect
            await nc.close()
        store.close()
        return lost, after, allowed, refused

    lost, after, allowed, refused = asyncio.run(scenario())
    assert len(lost) == 1 and "no refresh succeeded in time" in str(lost[0])
    assert after < 3.0  # reported before the server could have expired the entry
    assert not allowed and refused


def test_a_daemon_whose_lease_is_taken_faults_and_exits_1(daemons, nats_server, influx_url):
    """The entry is replaced behind the running daemon's back: its next refresh finds
    another revision, and the daemon stops (exit status 1, the fault logged)."""
    import nats

    from ingest_daemon.lease import BUCKET, lease_key

    daemon = daemons(store_url=influx_url).start()
    wait_until(lambda: _taken(daemon), 20, "the daemon to take the lease")

    async def replace() -> None:
        nc = await nats.connect(nats_server.url)
        kv = await nc.jetstream().key_value(BUCKET)
        key, _ = lease_key(influx_url)
        await kv.put(key, b'{"host": "elsewhere", "pid": 1, "since": "now"}')
        await nc.close()

    asyncio.run(replace())
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=30) == 1
    assert "fault in the InfluxDB writer lease" in daemon.log()
    assert "its entry was replaced or expired" in daemon.log()
