"""``telemetry demo --store postgresql://…`` runs the whole system on PostgreSQL: the
daemon stores the simulator's readings there, Dagster's backfill writes the rollups there,
and the alert (state, events, outbox, the verified delivery) lives in the same database;
nothing falls back to a local SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_demo_first_minute import Demo, get_json

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(900)]


def test_demo_runs_on_a_postgresql_store(tmp_path: Path, postgres_url: str):
    import psycopg

    demo = Demo(tmp_path / "state", sites=2, devices=4, hours=2)
    demo.args += ["--store", postgres_url]
    demo.start()
    try:
        demo.wait_line(r"^store +postgresql://", 120)
        demo.wait_line(r"ALERT firing +critical power-high: energy\.power_w = .* verified", 300)
        demo.wait_line(r"first partitions materialised", 300)
        api = f"http://127.0.0.1:{demo.api_port}"
        alerts = get_json(f"{api}/v1/alerts?state=all")
        assert any(d["outcome"] == "delivered" for a in alerts for d in a["deliveries"]), alerts
        with psycopg.connect(postgres_url) as conn:
            raw = conn.execute("SELECT count(*) FROM raw").fetchone()[0]
            quarters = conn.execute("SELECT count(*) FROM rollup_15m").fetchone()[0]
            delivered = conn.execute(
                "SELECT count(*) FROM alert_attempts WHERE outcome = 'delivered'"
            ).fetchone()[0]
        assert raw > 0 and quarters > 0 and delivered > 0
        code, output = demo.stop()
        assert code == 0, output[-3000:]
        assert "Traceback" not in output
    finally:
        demo.stop()
    state = tmp_path / "state"
    assert not (state / "telemetry.db").exists() and not (state / "alerts.db").exists()
