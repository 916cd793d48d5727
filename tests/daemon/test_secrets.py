"""No secret reaches the daemon's log, at any log level, whatever happens in the run.

The real daemon process is started with a secret in every place one can be: each URL of a
comma-separated NATS list (one server up, one down, so connection errors are logged),
the NATS password, token and credentials file (its path and its contents), the InfluxDB
token, and an InfluxDB store URL with a password (a store that is down, so store errors
are logged); it then handles good and bad messages and stops.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from telemetry_core.store import redact_url
from tests.conftest import free_port
from tests.daemon.conftest import publish_all, wait_until

SECRETS = {
    "url_1": "urlSecretOne",
    "url_2": "urlSecretTwo",
    "password": "passwordSecretThree",
    "token": "tokenSecretFour",
    "creds_dir": "credsDirSecretFive",
    "jwt": "jwtSecretSix",
    "seed": "SUSEEDSECRETSEVEN",
    "influx_token": "influxTokenSecretEight",
    "store_password": "storeSecretNine",
}


def _creds_file(tmp_path) -> str:
    folder = tmp_path / SECRETS["creds_dir"]
    folder.mkdir()
    path = folder / "ingest.creds"
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"eyJ0eXAiOiJKV1QifQ.{SECRETS['jwt']}.sig\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{SECRETS['seed']}\n"
        "------END USER NKEY SEED------\n"
    )
    return str(path)


def _messages() -> list:
    now = int(time.time())
    return [
        ("iot.energy.site-a.m-1", json.dumps({"timestamp": now, "power_w": 1.5}).encode(), None),
        ("iot.energy.site-a.m-2", b"\xff not json", None),
        ("iot.energy.site-a.m-3", json.dumps({"timestamp": now, "power_w": "x"}).encode(), None),
    ]


def _secret_env(nats_port: int, tmp_path) -> dict[str, str]:
    dead = free_port()
    return {
        "TELEMETRY_NATS_URL": (
            f"nats://alice:{SECRETS['url_1']}@127.0.0.1:{nats_port},"
            f"nats://bob:{SECRETS['url_2']}@127.0.0.1:{dead}"
        ),
        "TELEMETRY_NATS_USER": "carol",
        "TELEMETRY_NATS_PASSWORD": SECRETS["password"],
        "TELEMETRY_NATS_TOKEN": SECRETS["token"],
        "TELEMETRY_NATS_CREDS": _creds_file(tmp_path),
        "INFLUXDB_TOKEN": SECRETS["influx_token"],
        "TELEMETRY_SHUTDOWN_TIMEOUT_S": "3",
    }


def _assert_clean(text: str) -> None:
    leaked = [name for name, secret in SECRETS.items() if secret.lower() in text.lower()]
    assert not leaked, f"secrets in the log: {leaked}\n{text[-3000:]}"


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_no_secret_in_the_log_with_a_working_store(nats_server, daemons, tmp_path, level):
    env = _secret_env(nats_server.port, tmp_path)
    daemon = daemons(TELEMETRY_LOG_LEVEL=level, **env).start()
    asyncio.run(publish_all(nats_server.url, _messages()))
    wait_until(
        lambda: daemon.metric("telemetry_ingest_messages_total", outcome="dead_lettered") >= 2,
        30,
        "the bad messages dead-lettered",
    )
    assert daemon.stop() == 0
    text = daemon.log_path.read_text()
    assert "settings:" in text and "***" in text and "dead-letter" in text
    if level == "DEBUG":
        assert " DEBUG " in text
    _assert_clean(text)


def test_no_secret_in_the_log_while_the_store_is_down(nats_server, daemons, tmp_path):
    env = _secret_env(nats_server.port, tmp_path)
    store_url = f"influxdb://dave:{SECRETS['store_password']}@127.0.0.1:{free_port()}/telemetry"
    daemon = daemons(store_url=store_url, TELEMETRY_LOG_LEVEL="DEBUG", **env).start()
    asyncio.run(publish_all(nats_server.url, _messages()))
    wait_until(lambda: daemon.health()["store"]["up"] is False, 30, "the store reported down")
    daemon.stop()
    text = daemon.log_path.read_text()
    assert "unreachable" in text, "the store errors were logged"
    _assert_clean(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://a:pw1@h1:4222,nats://b:pw2@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
        ("nats://h1:4222,nats://b:pw2@h2", "nats://h1:4222,nats://b:***@h2"),
        ("nats://s3cretToken@h:4222", "nats://***@h:4222"),  # NATS reads a lone user as a token
        ("nats://a:pw,x@h1", "nats://a:***@h1"),
        ("influxdb://u:p@db:8086/t?token=abc&org=x", "influxdb://u:***@db:8086/t?token=***&org=x"),
        ("sqlite:////var/lib/a@b/telemetry.db", "sqlite:////var/lib/a@b/telemetry.db"),
        ("influxdb2://h:8086/b?org=o", "influxdb2://h:8086/b?org=o"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected
