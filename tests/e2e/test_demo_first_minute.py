"""What a new user sees in the demo's first minutes, with the real demo (nats-server with
MQTT, ingest daemon, simulator, HTTP API, webhook receiver, ``dagster dev``): history
rolled up by a real backfill, an alert delivered to the receiver and verified, the same
alert in the JSON-lines file and in ``/v1/alerts``, the history in ``/v1/series``, an MQTT
publish that trips the threshold, no late-data reruns from the seeded history, and a clean
Ctrl-C. Waits on conditions with generous deadlines; prints the times it measured."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from telemetry_cli.dagster_graphql import graphql
from tests.conftest import free_port
from tests.daemon.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MATERIALISED = """
query { assetNodeOrError(assetKey: {path: ["rollup_15m"]}) {
  ... on AssetNode { partitionStats { numMaterialized } } } }
"""
RUNS = """
query { runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }
"""


class Demo:
    """``telemetry demo`` as a user's terminal runs it (its own process group), on free
    ports, its output in a file the test reads as it grows."""

    def __init__(self, state: Path, *, sites: int = 2, devices: int = 8, hours: float = 6):
        self.state = state
        self.ui_port, self.api_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.args = ["--sites", str(sites), "--devices", str(devices), "--rate", "20"]
        self.args += ["--history-hours", str(hours)]
        self.out_path = state.parent / "demo.out"
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> Demo:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TELEMETRY_MQTT_PORT": str(self.mqtt_port)}
        for name in ("TELEMETRY_CONFIG", "TELEMETRY_STORE_URL", "TELEMETRY_DEMO_WEBHOOK_SECRET"):
            env.pop(name, None)
        cmd = [sys.executable, "-m", "telemetry_cli", "demo", "--state-dir", str(self.state)]
        cmd += ["--dagster-port", str(self.ui_port), "--api-port", str(self.api_port), *self.args]
        self.started = time.monotonic()
        with open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern`` (fails early if the demo exits)."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the demo exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            m = re.search(pattern, self.output(), re.M)
            if m:
                found.append(m)
            return bool(m)

        wait_until(seen, timeout, f"demo output {pattern!r}", interval=1.0)
        return found[0]

    def seconds(self, pattern: str) -> int:
        """The demo's own timestamp ``[  42s]`` of the line matching ``pattern``."""
        return int(self.wait_line(r"^\[\s*(\d+)s\] " + pattern, 1)[1])

    def stop(self) -> tuple[int, str]:
        """Ctrl-C in the terminal: SIGINT to the demo's foreground group."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode, self.output()


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def publish_mqtt(port: int, topic: str, payload: dict) -> None:
    """One QoS 1 publish, as the demo's mosquitto_pub example does (paho-mqtt)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-test")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def demo(tmp_path: Path):
    running = Demo(tmp_path / "state").start()
    try:
        yield running
    finally:
        running.stop()


def test_demo_shows_history_alerts_and_api_in_its_first_minutes(demo: Demo):
    demo.wait_line(r"Dagster UI ready", 300)
    demo.wait_line(r"backfill of \d+ windows of history launched", 60)

    # an alert from the simulator's first spike reaches the receiver, verified
    demo.wait_line(r"ALERT firing +critical power-high: energy\.power_w = .* verified", 300)
    firing_at = demo.seconds("ALERT firing")
    lines = [json.loads(x) for x in (demo.state / "alerts.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "alert.firing" and lines[0]["data"]["rule"] == "power-high"
    api = f"http://127.0.0.1:{demo.api_port}"
    alerts = get_json(f"{api}/v1/alerts?state=all")
    delivered = [
        d for a in alerts for d in a["deliveries"]
        if d["webhook"] == "demo-receiver" and d["outcome"] == "delivered"
    ]  # fmt: skip
    assert delivered, alerts

    # the history is rolled up: Dagster says so, and the API serves it
    demo.wait_line(r"first partitions materialised", 300)
    first_partition_at = demo.seconds("first partitions materialised")
    stats = graphql(demo.url, MATERIALISED)["assetNodeOrError"]["partitionStats"]
    assert stats["numMaterialized"] > 0
    # site_15m follows rollup_15m inside the same run: the API serves it once that step is done
    site_series = (
        f"{api}/v1/series?measurement=energy&field=energy_kwh&scope=site&site=site-a"
        "&resolution=15m&start=-6h"
    )
    wait_until(  # windows of seeded history, summed per site
        lambda: len(get_json(site_series)["points"]) >= 20, 180, "site_15m rows in the API", 2.0
    )

    demo.wait_line(r"history backfill completed_success, (\d+)/\1 asset partitions", 400)
    backfill_at = demo.seconds("history backfill")
    demo.wait_line(r"newest window \S+ rolled up as the schedule does", 60)

    # a device speaking MQTT (the demo's example topic) trips the threshold too
    publish_mqtt(
        demo.mqtt_port,
        "iot/energy/site-a/meter-mqtt",
        {"timestamp": time.time_ns(), "power_w": 7200.0},
    )
    demo.wait_line(r"ALERT firing .* = 7200 at site-a/meter-mqtt", 240)

    # the seeded history marked no window late: the late-data sensor started no run
    runs = graphql(demo.url, RUNS)["runsOrError"]["results"]
    late = [r for r in runs if any(t["key"] == "telemetry/late_batch" for t in r["tags"])]
    assert late == []

    code, output = demo.stop()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    print(
        f"\ndemo: first alert received {firing_at} s, first partition materialised "
        f"{first_partition_at} s, history backfill complete {backfill_at} s after start"
    )


def test_a_taken_mqtt_port_is_a_one_line_error(tmp_path: Path):
    """The default 1883 is often another broker's: say so and name the variable."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TELEMETRY_MQTT_PORT": str(port)}
        env.pop("TELEMETRY_CONFIG", None)
        result = subprocess.run(
            [sys.executable, "-m", "telemetry_cli", "demo", "--state-dir", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"MQTT port {port} is in use" in line and "TELEMETRY_MQTT_PORT" in line


def test_default_mqtt_port_taken_falls_back_to_a_free_one(tmp_path: Path):
    """Unset TELEMETRY_MQTT_PORT with 1883 taken (Mosquitto holds it on this machine; the
    test takes it itself where it is free): the demo says so and runs MQTT elsewhere."""
    import re
    import socket

    from telemetry_cli.ports import port_in_use

    holder = None
    if not port_in_use(1883):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 1883))
        holder.listen()
    try:
        env = {**os.environ}
        for name in ("TELEMETRY_MQTT_PORT", "TELEMETRY_CONFIG"):
            env.pop(name, None)
        result = subprocess.run(
            [sys.executable, "-m", "telemetry_cli", "demo", "--state-dir", str(tmp_path),
             "--no-dagster", "--history-hours", "0", "--api-port", "0", "--duration", "3"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        if holder is not None:
            holder.close()
    assert result.returncode == 0, result.stdout + result.stderr
    m = re.search(r"MQTT port 1883 is taken by another program: using (\d+)", result.stdout)
    assert m, result.stdout
    assert f"127.0.0.1:{m.group(1)}" in result.stdout
