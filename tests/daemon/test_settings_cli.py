"""Settings from the environment, secret redaction, and one-line CLI errors."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator

import pytest

from ingest_daemon.settings import Settings, SettingsError
from telemetry_cli.main import build_parser
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


# The flags DESIGN.md's user-facing contract names for each command (a flag with values
# lists them in the contract's order: argparse prints them as ``--flag {a,b}``). Commands the
# contract gives no flags still explain themselves; configuration flags that override the
# environment (``--nats-url``, ``--store-url``, ``--config``) are part of the contract too.
CONTRACT: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    ("demo",): {},
    ("ingest",): {"--nats-url": (), "--store-url": (), "--config": ()},
    ("simulate",): {"--nats-url": ()},
    ("query",): {
        "--measurement": (), "--field": (), "--start": (), "--end": (), "--site": (),
        "--device": (), "--resolution": ("auto", "raw", "15m", "1h"),
        "--scope": ("device", "site", "portfolio"), "--format": ("table", "csv", "json"),
        "--store-url": (),
    },
    ("backfill",): {"--start": (), "--end": (), "--site": ()},
    ("dlq",): {},
    ("dlq", "list"): {
        "--reason": (), "--since": (), "--limit": (), "--format": ("table", "json"),
        "--nats-url": (),
    },
    ("dlq", "replay"): {"--reason": (), "--since": (), "--dry-run": (), "--nats-url": ()},
    ("alerts",): {
        "--state": ("firing", "resolved", "all"), "--since": (), "--format": ("table", "json"),
    },
    ("api",): {"--host": (), "--port": (), "--store-url": (), "--config": ()},
    ("nats-config",): {"--out": (), "--config": (), "--site": ()},
    ("silence",): {},
    ("silence", "add"): {
        "--match": (), "--for": (), "--until": (), "--start": (), "--comment": (), "--by": (),
        "--format": ("table", "json"),
    },
    ("silence", "list"): {
        "--state": ("active", "pending", "expired", "all"), "--format": ("table", "json"),
    },
    ("silence", "expire"): {},
}  # fmt: skip
DESIGN_COMMANDS = {"demo", "ingest", "simulate", "query", "backfill", "dlq", "alerts", "api"}


def subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand the CLI's parser knows, nested ones (``dlq list``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


SUBCOMMANDS = dict(subcommands(build_parser()))


def test_the_contract_covers_every_subcommand_and_the_design_s_commands_exist():
    assert set(SUBCOMMANDS) <= set(CONTRACT), (
        f"add {sorted(set(SUBCOMMANDS) - set(CONTRACT))} to CONTRACT with its documented flags"
    )
    assert {path[0] for path in SUBCOMMANDS} >= DESIGN_COMMANDS
    top = telemetry("--help")
    assert top.returncode == 0, top.stderr
    for path in SUBCOMMANDS:
        if len(path) == 1:
            assert path[0] in top.stdout, path


@pytest.mark.parametrize("path", sorted(SUBCOMMANDS), ids=" ".join)
def test_every_subcommand_s_help_explains_it_with_its_contract_flags(path):
    result = telemetry(*path, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"usage: telemetry {' '.join(path)}"), text[:200]
    parser = SUBCOMMANDS[path]
    assert parser.description, f"telemetry {' '.join(path)} has no description"
    first_line = " ".join(parser.description.split("\n")[0].split()[:6])
    assert first_line in " ".join(text.split()), (first_line, text[:400])
    for flag, values in CONTRACT[path].items():
        shown = f"{flag} {{{','.join(values)}}}" if values else flag
        assert re.search(rf"(^|[\s\[]){re.escape(shown)}([\s\]=]|$)", text, re.M), (
            f"telemetry {' '.join(path)} --help does not show {shown}"
        )
    declared = {
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for option in action.option_strings
    }
    for option in declared:  # nothing the parser takes is hidden from its help
        assert option in text, option


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
