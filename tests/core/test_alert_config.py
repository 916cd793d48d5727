"""Alert rules in the TOML config: the DESIGN example, defaults, and one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from telemetry_core.alerts.secrets import resolve_secrets
from telemetry_core.config import ConfigError, load_config, parse_config

DESIGN_EXAMPLE = """
[[thresholds]]                        # checked by the daemon as readings arrive
name = "power-high"                   # unique; default "<measurement>.<field>.above|below"
measurement = "energy"
field = "power_w"
above = 5000.0                        # and/or below
for_seconds = 0                       # the breach must hold this long (0: first reading)
severity = "critical"                 # info | warning | critical
# site_id = "site-a", device_id = "meter-7" narrow a rule

[[anomalies]]                         # evaluated by anomaly_job for each 15-minute window
name = "power-unusual"
kind = "zscore"                       # zscore | silent | stuck
measurement = "energy"
field = "power_w"
z = 4.0                               # zscore: |robust z| of the window mean vs the same time of day
baseline_days = 28                    # zscore: trailing history compared against
min_history = 7                       # zscore: fewer baseline windows -> no verdict, said so
windows = 2                           # silent: no reading for N windows; stuck: one value for N windows
severity = "warning"

[alerts]
cooldown_seconds = 900                # one notification per alert key per cooldown
max_attempts = 10                     # then the delivery is marked failed (and stays visible)
backoff_seconds = 2                   # first retry delay; doubles each attempt, capped at 300

[[alerts.webhooks]]
name = "ops"
url = "https://ops.example/hooks/telemetry"
secret_env = "TELEMETRY_WEBHOOK_SECRET"   # env var holding the secret, "whsec_<base64>"
min_severity = "warning"
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_design_example_loads_every_key(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(DESIGN_EXAMPLE)
    cfg = load_config(path)
    [t] = cfg.thresholds
    assert (t.name, t.above, t.below, t.for_seconds, t.severity) == (
        "power-high", 5000.0, None, 0, "critical",
    )  # fmt: skip
    [a] = cfg.anomalies
    assert (a.name, a.kind, a.z, a.baseline_days, a.min_history, a.windows, a.severity) == (
        "power-unusual", "zscore", 4.0, 28, 7, 2, "warning",
    )  # fmt: skip
    s = cfg.alerts
    assert (s.cooldown_seconds, s.max_attempts, s.backoff_seconds) == (900, 10, 2)
    [hook] = s.webhooks
    assert (hook.name, hook.secret_env, hook.min_severity) == (
        "ops", "TELEMETRY_WEBHOOK_SECRET", "warning",
    )  # fmt: skip
    assert s.channels_for("critical") == ["ops"] and s.channels_for("info") == []


def test_defaults():
    cfg = parse_config(
        {
            "thresholds": [
                {"measurement": "energy", "field": "power_w", "above": 10},
                {"measurement": "energy", "field": "power_w", "below": 1},
                {"measurement": "hvac", "field": "temp.c", "above": 30, "below": 10},
            ],
            "anomalies": [{"kind": "stuck", "measurement": "hvac", "field": "temp.c"}],
        }
    )
    names = [t.name for t in cfg.thresholds]
    assert names == ["energy.power_w.above", "energy.power_w.below", "hvac.temp.c.outside"]
    assert all(t.severity == "warning" and t.for_seconds == 0 for t in cfg.thresholds)
    [a] = cfg.anomalies
    assert (a.name, a.z, a.baseline_days, a.min_history, a.windows) == (
        "hvac.temp.c.stuck", 4.0, 28, 7, 2,
    )  # fmt: skip
    assert cfg.alerts.cooldown_seconds == 900 and cfg.alerts.max_attempts == 10
    assert cfg.alerts.webhooks == () and cfg.alerts.files == ()


def test_backoff_doubles_and_is_capped():
    settings = parse_config({"alerts": {"backoff_seconds": 2}}).alerts
    assert [settings.backoff_ns(n) // 10**9 for n in (1, 2, 3, 8, 9, 30)] == [
        2, 4, 8, 256, 300, 300,
    ]  # fmt: skip


def test_routing_by_min_severity():
    cfg = parse_config(
        {
            "alerts": {
                "webhooks": [
                    {"name": "all", "url": "http://a/x", "secret_env": "A"},
                    {
                        "name": "pager",
                        "url": "https://b/y",
                        "secret_env": "B",
                        "min_severity": "critical",
                    },
                ],
                "files": [{"name": "log", "path": "x.jsonl", "min_severity": "warning"}],
            }
        }
    )
    assert cfg.alerts.channels_for("info") == ["all"]
    assert cfg.alerts.channels_for("warning") == ["all", "log"]
    assert cfg.alerts.channels_for("critical") == ["all", "pager", "log"]


T = {"measurement": "energy", "field": "power_w", "above": 1}
Z = {"name": "power-unusual", "kind": "zscore", "measurement": "energy", "field": "power_w"}
HOOK = {"name": "ops", "url": "https://ops.example/h", "secret_env": "OPS_SECRET"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"anomalies": [{**Z, "name": "a"}, {**Z, "zscore": 3}]}, r"\[\[anomalies\]\] #2 \(power-unusual\): unknown key 'zscore'"),
        ({"thresholds": [{**T, "colour": "red"}]}, r"\[\[thresholds\]\] #1: unknown key 'colour'"),
        ({"thresholds": [T, T]}, r"#2 \(energy.power_w.above\): name .* already used .* set a unique 'name'"),
        ({"thresholds": [{**T, "name": "x"}], "anomalies": [{**Z, "name": "x"}]}, "already used"),
        ({"thresholds": [{**T, "measurement": "en ergy"}]}, "#1: measurement 'en ergy' must match"),
        ({"thresholds": [{**T, "site_id": "a/b"}]}, "site_id 'a/b' must match"),
        ({"thresholds": [{**T, "field": "power w"}]}, "field 'power w' must match"),
        ({"thresholds": [{"measurement": "e", "field": "f"}]}, "needs 'above' or 'below'"),
        ({"thresholds": [{**T, "above": "5"}]}, "above must be a number"),
        ({"thresholds": [{**T, "below": 5}]}, "below .* must be lower than above"),
        ({"thresholds": [{**T, "for_seconds": -1}]}, "for_seconds must be >= 0"),
        ({"thresholds": [{**T, "severity": "fatal"}]}, "severity must be one of info, warning, critical"),
        ({"thresholds": [{**T, "name": "has space"}]}, "name 'has space' must match"),
        ({"anomalies": [{**Z, "kind": "spike"}]}, "kind must be one of zscore, silent, stuck"),
        ({"anomalies": [{**Z, "windows": 0}]}, "windows must be an integer >= 1"),
        ({"anomalies": [{**Z, "min_history": 30}]}, "min_history .* cannot exceed baseline_days"),
        ({"anomalies": [{**Z, "z": -1}]}, "z must be > 0"),
        ({"anomalies": [{**Z, "field": None}]}, "field None must match"),
        ({"alerts": {"cooldown": 5}}, r"\[alerts\]: unknown key 'cooldown'"),
        ({"alerts": {"max_attempts": 0}}, "max_attempts must be an integer >= 1"),
        ({"alerts": {"webhooks": [{**HOOK, "url": "ftp://x/y"}]}}, r"\[\[alerts.webhooks\]\] #1 \(ops\): url must be an http:// or https:// URL"),
        ({"alerts": {"webhooks": [{**HOOK, "url": "file:///etc/passwd"}]}}, "url must be an http"),
        ({"alerts": {"webhooks": [{"name": "ops", "url": "http://h/x"}]}}, "needs 'secret_env'"),
        ({"alerts": {"webhooks": [{**HOOK, "secret_env": "not a var"}]}}, "secret_env must name"),
        ({"alerts": {"webhooks": [{**HOOK, "secret": "whsec_x"}]}}, "unknown key 'secret'"),
        ({"alerts": {"webhooks": [HOOK, HOOK]}}, "two channels are named 'ops'"),
        ({"alerts": {"files": [{"name": "log"}]}}, "needs 'path'"),
        ({"alert": {}}, "unknown key 'alert'"),
    ],
)  # fmt: skip
def test_rule_errors_are_one_line_naming_the_rule_and_key(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(data)
    assert "\n" not in str(info.value)


def test_zscore_may_carry_windows_and_silent_may_carry_z():
    """Every anomaly key is allowed on every kind: only unknown keys are errors."""
    cfg = parse_config(
        {"anomalies": [{**Z, "windows": 3}, {**Z, "name": "s", "kind": "silent", "z": 2}]}
    )
    assert [a.kind for a in cfg.anomalies] == ["zscore", "silent"]


def test_error_from_a_file_names_the_file(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(DESIGN_EXAMPLE.replace("z = 4.0", "zscore = 4.0"))
    with pytest.raises(
        ConfigError, match=r"c.toml: \[\[anomalies\]\] #1 \(power-unusual\): unknown key 'zscore'"
    ):
        load_config(path)


def test_secrets_resolve_and_errors_name_the_variable_never_the_value():
    cfg = parse_config(tomllib.loads(DESIGN_EXAMPLE))
    secrets = resolve_secrets(cfg, {"TELEMETRY_WEBHOOK_SECRET": SECRET})
    assert len(secrets.key("ops")) == 24 and "MfKQ" not in repr(secrets)
    with pytest.raises(ConfigError, match="TELEMETRY_WEBHOOK_SECRET is not set"):
        resolve_secrets(cfg, {})
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not*base64!", "whsec_!!!!"):
        with pytest.raises(ConfigError, match="TELEMETRY_WEBHOOK_SECRET must hold") as info:
            resolve_secrets(cfg, {"TELEMETRY_WEBHOOK_SECRET": bad})
        assert bad not in str(info.value) or bad == "whsec_"
