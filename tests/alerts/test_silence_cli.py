"""``telemetry silence add/list/expire``: ids, JSON keys, states, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from telemetry_cli.main import main

SILENCE_KEYS = {"silence_id", "matchers", "starts_at", "ends_at", "comment", "created_by", "state"}


@pytest.fixture(params=["sqlite", "postgresql"])
def alerts_env(request, tmp_path, monkeypatch) -> str:
    url = str(tmp_path / "alerts.db")
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("TELEMETRY_ALERTS_DB", url)
    return url


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_expire(alerts_env, capsys):
    code, out, _ = run(capsys, "silence", "add", "--match", "site_id=site-a", "--match",
                       "device_id=meter-*", "--for", "2h", "--comment", "meter swap", "--by", "ann")  # fmt: skip
    assert code == 0
    sid = out.strip()
    assert sid.startswith("sil_") and len(out.splitlines()) == 1
    code, out, _ = run(capsys, "silence", "add", "--match", "rule=power-high", "--start", "+1h",
                       "--until", "+3h", "--comment", "later", "--format", "json")  # fmt: skip
    later = json.loads(out)
    assert set(later) == SILENCE_KEYS and later["state"] == "pending"
    assert later["matchers"] == {"rule": "power-high"}
    code, out, _ = run(capsys, "silence", "list", "--format", "json")
    listed = json.loads(out)
    assert {s["silence_id"]: s["state"] for s in listed} == {sid: "active",
                                                            later["silence_id"]: "pending"}  # fmt: skip
    mine = next(s for s in listed if s["silence_id"] == sid)
    assert mine["matchers"] == {"site_id": "site-a", "device_id": "meter-*"}
    assert (mine["comment"], mine["created_by"]) == ("meter swap", "ann")
    assert mine["starts_at"].endswith("Z") and mine["ends_at"].endswith("Z")
    assert run(capsys, "silence", "expire", sid)[0] == 0
    _, out, _ = run(capsys, "silence", "list", "--format", "json")
    assert [s["silence_id"] for s in json.loads(out)] == [later["silence_id"]]
    _, out, _ = run(capsys, "silence", "list", "--state", "expired", "--format", "json")
    assert [(s["silence_id"], s["state"]) for s in json.loads(out)] == [(sid, "expired")]
    _, out, _ = run(capsys, "silence", "list", "--state", "all", "--format", "json")
    assert len(json.loads(out)) == 2
    _, out, _ = run(capsys, "silence", "list")
    assert later["silence_id"] in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--match", "site_id=a", "--for", "2h"], "--comment"),
        (["add", "--for", "2h", "--comment", "x"], "--match"),
        (["add", "--match", "site_id=a", "--comment", "x"], "--for"),
        (["add", "--match", "site_id=a", "--for", "2x", "--comment", "x"], "duration"),
        (["add", "--match", "colour=red", "--for", "2h", "--comment", "x"], "unknown label"),
        (["add", "--match", "site_id=a", "--until", "-1h", "--comment", "x"], "past"),
        (["expire", "sil_nope"], "no silence"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path, args, message):
    env = {**os.environ, "TELEMETRY_ALERTS_DB": str(tmp_path / "alerts.db")}
    proc = subprocess.run([sys.executable, "-m", "telemetry_cli", "silence", *args], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
