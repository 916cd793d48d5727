"""A daemon that cannot reach NATS waits with backoff, says so in a few log lines and on
``/health``, and stops promptly when told to, with exit status 0 (SIGTERM or SIGINT):
at start with no server answering, and while reconnecting after the server went away."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import time

import pytest

from tests.conftest import free_port
from tests.daemon.conftest import DaemonProc, publish_all, wait_until

SHUTDOWN_TIMEOUT_S = 5.0


def _refused_lines(log: str) -> int:
    """Lines that report a failed connection attempt, whatever the socket said (a server
    going down answers "reset by peer" to an attempt in flight, then "refused"): the first
    failure of an outage is one, the next are counted silently into the summary."""
    return sum("NATS not reachable (" in line for line in log.splitlines())


def _stopped_within(daemon: DaemonProc, sig: signal.Signals, timeout: float) -> int:
    assert daemon.proc is not None
    t0 = time.monotonic()
    daemon.proc.send_signal(sig)
    try:
        code = daemon.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError(
            f"still running {timeout}s after {sig.name}:\n{daemon.log()}"
        ) from None
    assert time.monotonic() - t0 <= timeout
    return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_no_nats_at_start_backs_off_and_stops_on_a_signal(sig, sqlite_url, tmp_path):
    unreachable = f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}"
    daemon = DaemonProc(
        unreachable,
        sqlite_url,
        tmp_path,
        TELEMETRY_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
    )
    started = time.monotonic()
    try:
        daemon.start()  # /health answers while NATS does not
        time.sleep(max(0.0, 8 - (time.monotonic() - started)))
        body = daemon.health()
        code = _stopped_within(daemon, sig, SHUTDOWN_TIMEOUT_S)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
    assert code == 0, daemon.log()
    assert body["status"] != "ok" and body["nats"]["connected"] is False
    assert "Connection refused" in body["nats"]["error"]
    # without backoff: two servers every 0.5 s, 32 attempts in 8 s; with it about 10
    assert 4 <= body["nats"]["failed_attempts"] <= 14, body
    log = daemon.log()
    # the first failure, then one summary a minute: one line in 8 s (was four a second)
    assert _refused_lines(log) == 1, log
    assert "Traceback" not in log


def test_lost_nats_backs_off_reconnects_and_stops_on_sigterm(nats_server, sqlite_url, tmp_path):
    daemon = DaemonProc(
        nats_server.url, sqlite_url, tmp_path, TELEMETRY_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S)
    )
    try:
        daemon.start()
        wait_until(lambda: daemon.health()["status"] == "ok", 30, "ok")
        nats_server.stop()
        wait_until(lambda: daemon.health()["nats"]["connected"] is False, 30, "disconnected")
        time.sleep(4)
        # without backoff: a warning every 0.5 s; here the first failure only
        assert _refused_lines(daemon.log()) == 1, daemon.log()
        body = daemon.health()
        assert body["status"] != "ok" and body["nats"]["failed_attempts"] >= 2, body

        nats_server.start()  # back: the daemon reconnects within the backoff cap
        wait_until(lambda: daemon.health()["status"] == "ok", 30, "reconnected")
        assert daemon.health()["nats"]["failed_attempts"] == 0
        now = int(time.time())
        msg = ("iot.energy.site-a.m-1", json.dumps({"timestamp": now, "power_w": 1.0}).encode())
        asyncio.run(publish_all(nats_server.url, [(*msg, None)]))
        wait_until(
            lambda: daemon.metric("telemetry_ingest_messages_total", outcome="stored") == 1,
            30,
            "stored after the reconnect",
        )

        nats_server.stop()  # gone again: SIGTERM while reconnecting
        wait_until(
            lambda: daemon.health()["nats"].get("failed_attempts", 0) >= 1, 30, "reconnecting"
        )
        code = _stopped_within(daemon, signal.SIGTERM, SHUTDOWN_TIMEOUT_S)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
    assert code == 0, daemon.log()
    assert _refused_lines(daemon.log()) == 2, daemon.log()  # one per outage


def test_attempts_back_off_to_a_cap_and_log_a_summary_a_minute(caplog):
    from ingest_daemon.connection import Attempts

    now = [100.0]
    attempts = Attempts(first_s=0.5, cap_s=10.0, summary_s=60.0, clock=lambda: now[0])
    delays = []
    with caplog.at_level(logging.INFO, logger="ingest_daemon.connection"):
        for _ in range(40):  # 40 failures over about five minutes
            delays.append(attempts.failed(ConnectionRefusedError("Connection refused")))
            now[0] += delays[-1]
        assert attempts.status()["failed_attempts"] == 40
        attempts.succeeded()
    for delay, ceiling in zip(delays, (0.5, 1, 2, 4, 8, 10, 10), strict=False):
        assert 0.8 * ceiling <= delay <= ceiling  # doubling, with jitter, to the cap
    assert all(d <= 10.0 for d in delays)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("NATS not reachable (Connection refused)")
    summaries = [line for line in lines if line.startswith("NATS still not reachable")]
    assert 3 <= len(summaries) <= 6, lines  # one a minute, not one an attempt
    assert lines[-1].startswith("NATS reachable again after 40 failed attempts")
    assert attempts.status() == {"failed_attempts": 0, "down_s": None, "error": None}


def test_attempts_wait_after_each_pass_over_the_servers():
    """The next server is tried at once (a failover costs no wait); the wait comes after
    every server failed once, and doubles per pass."""
    from ingest_daemon.connection import Attempts

    attempts = Attempts(first_s=0.5, cap_s=10.0, clock=lambda: 0.0)
    delays = [attempts.failed(OSError("refused"), servers=3) for _ in range(9)]
    assert delays[0] == delays[1] == 0.0 and 0.4 <= delays[2] <= 0.5
    assert delays[3] == delays[4] == 0.0 and 0.8 <= delays[5] <= 1.0
    assert delays[6] == delays[7] == 0.0 and 1.6 <= delays[8] <= 2.0
