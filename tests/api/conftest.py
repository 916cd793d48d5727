"""A real ``telemetry api`` process over an SQLite store holding nine days of two sites.

The stored rollups are written level by level with the platform's rollup maths (what the
Dagster assets do); the tests compute every expected value by hand from the raw points.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry_cli.services import stop_process
from telemetry_core.config import load_config
from telemetry_core.rollup import combine, with_work_hours
from telemetry_core.store import open_store
from telemetry_core.timeutil import parse_rfc3339
from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

CONFIG = textwrap.dedent(
    """
    [sites.site-a]
    timezone = "Europe/Berlin"
    work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }

    [fields]
    "energy.energy_kwh" = "delta"
    "energy.power_w" = "gauge"
    """
)
START = parse_rfc3339("2026-11-09T00:00:00Z")  # a Monday
DAYS = 9
SITES = {"site-a": ("m1", "m2", "m3"), "site-b": ("m1", "m4")}
STEP_NS = 5 * 60 * 10**9


def make_points() -> list[tuple]:
    """Deterministic readings every 5 minutes; values differ per device so rankings are clear."""
    points = []
    for si, (site, devices) in enumerate(SITES.items()):
        for di, device in enumerate(devices):
            for k in range(DAYS * 24 * 12):
                t = START + k * STEP_NS + (di + 1) * 10**9  # devices offset by seconds
                energy = round(0.01 * (si + 1) * (di + 1) + (k % 7) * 0.001, 6)
                power = 100.0 * (si + 1) + 10 * di + (k % 12)
                points.append(("energy", site, device, "energy_kwh", t, energy))
                points.append(("energy", site, device, "power_w", t, power))
    return points


def write_rollups(store, config, start: int, end: int) -> None:
    """Every stored level, as the Dagster assets compute them."""
    for width, suffix in ((WINDOW_15M_NS, "15m"), (HOUR_NS, "1h")):
        device = (
            store.aggregate_raw(start, end, WINDOW_15M_NS)
            if suffix == "15m"
            else combine(store.read_rollups("15m", start, end), HOUR_NS, "device")
        )
        store.replace_rollups(suffix, start, end, with_work_hours(device, config, "device"))
        site = combine(store.read_rollups(suffix, start, end), width, "site")
        store.replace_rollups(f"site_{suffix}", start, end, with_work_hours(site, config, "site"))
        portfolio = combine(store.read_rollups(f"site_{suffix}", start, end), width, "portfolio")
        store.replace_rollups(
            f"portfolio_{suffix}", start, end, with_work_hours(portfolio, config, "portfolio")
        )


@dataclass
class Api:
    base: str
    store_url: str
    config_path: str
    points: list[tuple]

    def get(self, path: str, **params) -> tuple[int, object]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="session")
def api(tmp_path_factory) -> Iterator[Api]:
    root: Path = tmp_path_factory.mktemp("api")
    config_path = root / "telemetry.toml"
    config_path.write_text(CONFIG)
    store_url = f"sqlite:///{root / 'telemetry.db'}"
    points = make_points()
    store = open_store(store_url)
    try:
        store.write_points(points)
        write_rollups(store, load_config(config_path), START, START + DAYS * 24 * HOUR_NS)
    finally:
        store.close()
    with serve_api(store_url, config_path) as base:
        yield Api(base, store_url, str(config_path), points)


@contextlib.contextmanager
def serve_api(store_url: str, config_path: Path, port: int = 0) -> Iterator[str]:
    """A real ``telemetry api`` process until the block ends; yields its base URL once it
    answers. Port 0 lets the server bind any free port and print it (no race with another
    worker's pick)."""
    env = {**os.environ, "TELEMETRY_STORE_URL": store_url, "TELEMETRY_CONFIG": str(config_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry_cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        stop_process(proc)
        raise RuntimeError(f"telemetry api did not start: {line}{proc.stdout.read()}")
    base = next(w for w in line.split() if w.startswith("http://"))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2).read()
            break
        except urllib.error.HTTPError:  # answering (a 503 is an answer: the store is down)
            break
        except OSError:
            if time.monotonic() > deadline:
                stop_process(proc)
                raise
            time.sleep(0.1)
    try:
        yield base
    finally:
        stop_process(proc, 10)
