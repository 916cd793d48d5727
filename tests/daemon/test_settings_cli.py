"""Settings from the environment, secret redaction, and one-line CLI errors."""

from __future__ import annotations

import json

import pytest

from ingest_daemon.settings import Settings, SettingsError
from tests.daemon.conftest import telemetry


def test_environment_then_flags():
    env = {
        "TELEMETRY_NATS_URL": "nats://n:4222",
        "TELEMETRY_BATCH_SIZE": "250",
        "TELEMETRY_HTTP_PORT": "0",
    }
    s = Settings.load(env, batch_size=None, http_port=9999)
    assert (s.nats_url, s.batch_size, s.http_port) == ("nats://n:4222", 250, 9999)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEMETRY_BATCH_SIZE": "many"}, "TELEMETRY_BATCH_SIZE='many' is not an integer"),
        ({"TELEMETRY_BATCH_SIZE": "0"}, "batch size"),
        ({"TELEMETRY_NATS_USER": "u"}, "TELEMETRY_NATS_PASSWORD is not"),
        ({"TELEMETRY_NATS_CREDS": "/nope/x.creds"}, "does not exist"),
        ({"TELEMETRY_NATS_TLS_CERT": "/etc/hostname"}, "together"),
        ({"TELEMETRY_LOG_LEVEL": "LOUD"}, "log level"),
        ({"TELEMETRY_ACK_WAIT_S": "0.5"}, "TELEMETRY_ACK_WAIT_S must be between"),
        ({"TELEMETRY_ACK_WAIT_S": "soon"}, "is not a number"),
    ],
)
def test_bad_settings(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.load(env)


def test_secrets_are_redacted():
    s = Settings.load(
        {
            "TELEMETRY_NATS_USER": "ingest",
            "TELEMETRY_NATS_PASSWORD": "hunter2",
            "TELEMETRY_NATS_TOKEN": "tok-123",
            "TELEMETRY_STORE_URL": "influxdb://admin:s3cret@db:8086/telemetry",
        }
    )
    text = json.dumps(s.redacted())
    for secret in ("hunter2", "tok-123", "s3cret"):
        assert secret not in text
    assert "ingest" in text


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("ingest", "--check"), {"TELEMETRY_BATCH_SIZE": "x"}, "is not an integer"),
        (("ingest", "--check", "--config", "/nope.toml"), None, "does not exist"),
        (("ingest", "--check", "--store-url", "mysql://x"), None, "unsupported store URL"),
        (
            ("query", "--measurement", "e;drop", "--field", "f", "--start", "-1h"),
            None,
            "must match",
        ),
        (
            ("query", "--measurement", "e", "--field", "f", "--start", "soon"),
            None,
            "neither RFC 3339",
        ),
        (
            ("query", "--measurement", "e", "--field", "f", "--start", "-1h", "--end", "-2h"),
            None,
            "after --start",
        ),
        (
            (
                "query",
                "--measurement",
                "e",
                "--field",
                "f",
                "--start",
                "-1h",
                "--resolution",
                "raw",
                "--scope",
                "site",
            ),
            None,
            "no site or portfolio",
        ),
        (
            ("simulate", "--nats-url", "nats://127.0.0.1:1", "--count", "1"),
            None,
            "cannot connect to NATS",
        ),
        (("simulate", "--late", "2"), None, "fraction"),
    ],
)
def test_cli_mistakes_get_one_line(args, env, needle, tmp_path):
    env = {"TELEMETRY_STORE_URL": f"sqlite:///{tmp_path / 't.db'}", **(env or {})}
    result = telemetry(*args, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr


def test_check_accepts_good_settings(tmp_path):
    result = telemetry("ingest", "--check", TELEMETRY_STORE_URL=f"sqlite:///{tmp_path / 't.db'}")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_every_subcommand_explains_itself():
    for command in ("demo", "ingest", "simulate", "query"):
        result = telemetry(command, "--help")
        assert result.returncode == 0 and len(result.stdout) > 200, command


def test_ingest_help_documents_its_exit_statuses():
    text = " ".join(telemetry("ingest", "--help").stdout.split())
    for status in ("0 stopped by SIGTERM or SIGINT", "1 a fault", "2 a mistake"):
        assert status in text, text


@pytest.mark.parametrize(
    ("secret", "needle"),
    [(None, "TELEMETRY_TEST_HOOK_SECRET"), ("not-a-secret", "TELEMETRY_TEST_HOOK_SECRET")],
)
def test_check_refuses_a_missing_or_malformed_webhook_secret(tmp_path, secret, needle):
    config = tmp_path / "t.toml"
    config.write_text(
        '[[alerts.webhooks]]\nname = "ops"\nurl = "http://127.0.0.1:9/hook"\n'
        'secret_env = "TELEMETRY_TEST_HOOK_SECRET"\n'
    )
    env = {"TELEMETRY_STORE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    if secret is not None:
        env["TELEMETRY_TEST_HOOK_SECRET"] = secret
    result = telemetry("ingest", "--check", "--config", str(config), **env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert secret is None or secret not in result.stderr
