"""``telemetry alerts``: JSON shape, filters, delivery entries, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from telemetry_cli.main import main
from telemetry_core.alerts.db import alerts_db_url, open_alerts_db
from telemetry_core.alerts.delivery import deliver_due
from telemetry_core.alerts.engine import ThresholdEngine
from telemetry_core.alerts.secrets import resolve_secrets
from telemetry_core.timeutil import format_rfc3339
from tests.alerts.conftest import S, make_config
from tests.alerts.receiver import Receiver
from tests.conftest import free_port

ALERT_KEYS = {
    "alert_id", "rule", "kind", "severity", "state", "measurement", "site_id", "device_id",
    "field", "value", "started_at", "resolved_at", "deliveries",
}  # fmt: skip
DELIVERY_KEYS = {"webhook", "event", "attempt", "at", "outcome", "status", "error"}


@pytest.fixture(params=["store file", "postgresql"])
def recorded(tmp_path, monkeypatch, request):
    """A SQLite store file (or the PostgreSQL database TELEMETRY_ALERTS_DB names) holding:
    a delivered+resolved alert (ops got 503 then 200), a firing alert waiting for its first
    attempt, and a suppressed repeat."""
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    monkeypatch.setenv("TELEMETRY_STORE_URL", store_url)
    monkeypatch.delenv("TELEMETRY_ALERTS_DB", raising=False)
    if request.param == "postgresql":
        monkeypatch.setenv("TELEMETRY_ALERTS_DB", request.getfixturevalue("postgres_url"))
    receiver = Receiver(free_port(), script=[503]).start()
    cfg = make_config(
        [{"measurement": "energy", "field": "power_w", "above": 100, "name": "power-high"}],
        cooldown_seconds=900,
        backoff_seconds=1,
        webhooks=[{"name": "ops", "url": receiver.url, "secret_env": "OPS"}],
    )
    db = open_alerts_db(alerts_db_url(store_url))
    engine = ThresholdEngine(cfg, db)
    now = time.time_ns()
    t = now - 3600 * S

    def apply(seconds, value, device="m-1"):
        engine.apply([("energy", "site-a", device, "power_w", t + seconds * S, value)], None, now)

    apply(0, 500)
    secrets = resolve_secrets(cfg, {"OPS": "whsec_" + "QUJD" * 8})
    try:
        deliver_due(db, cfg, secrets, now)  # 503
        apply(60, 5)  # resolved
        deliver_due(db, cfg, secrets, now + 2 * S)  # firing: 200, then resolved: 200
    finally:
        receiver.stop()
    apply(120, 600)  # within the cooldown: suppressed
    apply(0, 700, device="m-2")  # another key: pending
    db.close()
    return {"t": t, "now": now}


def run_json(capsys, *args) -> list[dict]:
    assert main(["alerts", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_shape_and_delivery_entries(recorded, capsys):
    alerts = run_json(capsys)
    assert [set(a) for a in alerts] == [ALERT_KEYS] * 3
    assert all(
        set(d) == DELIVERY_KEYS | ({"reason"} if d["outcome"] == "suppressed" else set())
        for a in alerts
        for d in a["deliveries"]
    )
    by = {(a["device_id"], a["state"]): a for a in alerts}
    done = by[("m-1", "resolved")]
    assert (done["rule"], done["kind"], done["value"]) == ("power-high", "threshold", 500.0)
    assert done["started_at"] == format_rfc3339(recorded["t"])
    assert done["resolved_at"] == format_rfc3339(recorded["t"] + 60 * S)
    assert [(d["event"], d["attempt"], d["outcome"], d["status"]) for d in done["deliveries"]] == [
        ("firing", 1, "failed", 503), ("firing", 2, "delivered", 200),
        ("resolved", 1, "delivered", 200),
    ]  # fmt: skip
    assert done["deliveries"][0]["error"].startswith("HTTP 503")
    [suppressed] = by[("m-1", "firing")]["deliveries"]
    assert (suppressed["attempt"], suppressed["outcome"], suppressed["webhook"]) == (
        0, "suppressed", "ops",
    )  # fmt: skip
    assert suppressed["reason"] == "cooldown"
    [pending] = by[("m-2", "firing")]["deliveries"]
    assert (pending["attempt"], pending["outcome"], pending["status"]) == (1, "pending", None)
    assert pending["at"] == format_rfc3339(recorded["now"])


def test_state_and_since_filters(recorded, capsys):
    assert {a["state"] for a in run_json(capsys, "--state", "firing")} == {"firing"}
    assert [a["state"] for a in run_json(capsys, "--state", "resolved")] == ["resolved"]
    since = format_rfc3339(recorded["t"] + 30 * S)
    # the m-1 alert resolved after T, the repeat fired after T; m-2 fired before T
    assert {(a["device_id"], a["state"]) for a in run_json(capsys, "--since", since)} == {
        ("m-1", "resolved"), ("m-1", "firing"),
    }  # fmt: skip
    assert run_json(capsys, "--since", "-1m") == []  # relative, glued by main


def test_table_and_the_console_script(recorded):
    out = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "telemetry"), "alerts", "--since", "-2h"],
        capture_output=True, text=True, env=os.environ.copy(), check=True,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["started_at", "state", "severity", "rule"]
    assert len(lines) == 4 and "(3 alerts)" in out.stderr
    assert any("ops firing:delivered(2) resolved:delivered(1)" in line for line in lines)


def test_no_database_yet_is_an_empty_list(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TELEMETRY_STORE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    assert run_json(capsys) == []


def test_a_postgres_database_without_alert_tables_is_an_empty_list(postgres_url, capsys):
    assert run_json(capsys, "--alerts-db", postgres_url) == []
    assert not open_alerts_db(postgres_url, create=False).has_tables()  # nothing created


def test_an_unreachable_postgres_is_one_line_without_the_password(capsys):
    url = f"postgresql://ops:s3cret@127.0.0.1:{free_port()}/telemetry"
    assert main(["alerts", "--alerts-db", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("telemetry alerts: error: alerts database") and err.count("\n") == 1
    assert "s3cret" not in err and "ops:***@" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "time 'yesterday' is neither RFC 3339"),
        (["--alerts-db", "/nonexistent-dir/x.db"], None),  # missing: empty, not an error
    ],
)
def test_bad_input(tmp_path, capsys, args, message):
    code = main(["alerts", *args])
    err = capsys.readouterr().err
    if message is None:
        assert code == 0
        return
    assert code == 2 and err.count("\n") == 1 and message in err
    assert err.startswith("telemetry alerts: error:")


def test_bad_state_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["alerts", "--state", "open"])
    assert info.value.code == 2 and "invalid choice: 'open'" in capsys.readouterr().err
