"""HTTP query API benchmark over the reference building fleet (5 sites, 200 devices).

    .venv/bin/python bench/bench_api.py [--days 30] [--requests 200]

1. Writes `--days` of 15-minute device rollups for 200 devices and 2 fields straight into a
   fresh SQLite store (what the rollup assets would have written; raw points are not needed
   to answer these questions), then the hourly, site and portfolio levels with the shared
   rollup maths.
2. Starts a real `telemetry api` process and times, over HTTP with one keep-alive client:
   - a 7-day 15-minute series of one site (`/v1/series?scope=site`, 672 points),
   - a 7-day 15-minute series of one device (`/v1/series`, 672 points),
   - a 30-day portfolio ranking of sites (`/v1/top?by=site`).
3. Baseline, same run: the same questions answered in-process by `telemetry_core.series`
   (no HTTP, no JSON), so the ratio shows what the server layer costs.

Prints p50/p95 per question and the ratio to the baseline; nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from telemetry_core.config import Config, Site, WorkHours  # noqa: E402
from telemetry_core.rollup import combine, with_work_hours  # noqa: E402
from telemetry_core.series import build_query, series, top  # noqa: E402
from telemetry_core.store import open_store  # noqa: E402
from telemetry_core.timeutil import format_rfc3339, parse_rfc3339  # noqa: E402
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS  # noqa: E402

SITES = [f"site-{c}" for c in "abcde"]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]
DEVICES_PER_SITE = 40
CONFIG_TOML = """
[fields]
"energy.energy_kwh" = "delta"
"energy.power_w" = "gauge"
""" + "".join(
    f'\n[sites.{s}]\ntimezone = "{z}"\n'
    'work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }\n'
    for s, z in zip(SITES, ZONES, strict=True)
)


def bench_config() -> Config:
    from datetime import time as dtime

    hours = WorkHours(frozenset(range(5)), dtime(8), dtime(18))
    sites = {s: Site(s, z, hours) for s, z in zip(SITES, ZONES, strict=True)}
    return Config(sites=sites, fields={"energy.energy_kwh": "delta", "energy.power_w": "gauge"})


def device_rollups(start: int, days: int):
    """15-minute partials of every device and field, as the rollup asset stores them."""
    import polars as pl

    rng = random.Random(3)
    windows = pl.Series("window_start", range(start, start + days * DAY_NS, WINDOW_15M_NS))
    frames = []
    for site in SITES:
        for d in range(DEVICES_PER_SITE):
            device = f"meter-{d:02d}"
            base = rng.uniform(200, 2000)
            for field, scale in (("energy_kwh", 1 / 120), ("power_w", 1.0)):
                n = len(windows)
                level = base * scale
                frames.append(
                    pl.DataFrame(
                        {
                            "window_start": windows,
                            "measurement": ["energy"] * n,
                            "site_id": [site] * n,
                            "device_id": [device] * n,
                            "field": [field] * n,
                            "count": [30] * n,
                            "sum": [level * 30] * n,
                            "min": [level * 0.9] * n,
                            "max": [level * 1.1] * n,
                            "first": [level] * n,
                            "last": [level] * n,
                            "first_time": windows,
                            "last_time": windows + (WINDOW_15M_NS - 30 * 10**9),
                        }
                    )
                )
    return pl.concat(frames)


def populate(store, config: Config, start: int, days: int) -> None:
    end = start + days * DAY_NS
    step = 7 * DAY_NS  # write a week at a time to bound memory
    rows = device_rollups(start, days)
    import polars as pl

    for a in range(start, end, step):
        b = min(a + step, end)
        week = rows.filter(pl.col("window_start").is_between(a, b, closed="left"))
        store.replace_rollups("15m", a, b, with_work_hours(week, config, "device"))
        hourly = combine(week, HOUR_NS, "device")
        store.replace_rollups("1h", a, b, with_work_hours(hourly, config, "device"))
        for suffix, width, dev in (("15m", WINDOW_15M_NS, week), ("1h", HOUR_NS, hourly)):
            site = with_work_hours(combine(dev, width, "site"), config, "site")
            store.replace_rollups(f"site_{suffix}", a, b, site)
            port = with_work_hours(combine(site.drop("is_work_hours"), width, "portfolio"),
                                   config, "portfolio")  # fmt: skip
            store.replace_rollups(f"portfolio_{suffix}", a, b, port)


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    start = parse_rfc3339("2026-10-12T00:00:00Z")
    end = start + args.days * DAY_NS
    config = bench_config()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        store_url = f"sqlite:///{tmp}/telemetry.db"
        cfg = Path(tmp) / "telemetry.toml"
        cfg.write_text(CONFIG_TOML)
        t0 = time.perf_counter()
        store = open_store(store_url)
        populate(store, config, start, args.days)
        print(
            f"wrote {args.days} days of rollups for 200 devices in {time.perf_counter() - t0:.1f}s"
        )
        week_end = end
        week_start = week_end - 7 * DAY_NS
        questions = {
            "site 7d 15m series": ("/v1/series", {
                "measurement": "energy", "field": "energy_kwh", "scope": "site",
                "site": "site-c", "start": format_rfc3339(week_start),
                "end": format_rfc3339(week_end)}),
            "device 7d 15m series": ("/v1/series", {
                "measurement": "energy", "field": "power_w", "site": "site-c",
                "device": "meter-17", "start": format_rfc3339(week_start),
                "end": format_rfc3339(week_end)}),
            "portfolio 30d top sites": ("/v1/top", {
                "measurement": "energy", "field": "energy_kwh", "by": "site",
                "start": format_rfc3339(end - 30 * DAY_NS), "end": format_rfc3339(end)}),
        }  # fmt: skip

        def in_process(path: str, params: dict) -> None:
            if path == "/v1/series":
                q = build_query(**{k: params.get(k) for k in ("measurement", "field")},
                                start=params["start"], end=params["end"],
                                site=params.get("site"), device=params.get("device"),
                                scope=params.get("scope", "device"))  # fmt: skip
                series(store, config, q, with_value=True)
            else:
                q = build_query(measurement=params["measurement"], field=params["field"],
                                start=params["start"], end=params["end"])  # fmt: skip
                top(store, config, measurement=q.measurement, field=q.field,
                    start_ns=q.start_ns, end_ns=q.end_ns, by=params["by"])  # fmt: skip

        env = {**os.environ, "TELEMETRY_STORE_URL": store_url, "TELEMETRY_CONFIG": str(cfg)}
        proc = subprocess.Popen([sys.executable, "-m", "telemetry_cli", "api", "--port", "0"],
                                env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            base = next(w for w in line.split() if w.startswith("http://"))
            host, port = base.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            print(f"\n{'question':26} {'points':>6} {'HTTP p50':>9} {'p95':>8} "
                  f"{'in-process p50':>15} {'ratio':>6}")  # fmt: skip
            for name, (path, params) in questions.items():
                url = f"{path}?{urlencode(params)}"
                http_t, local_t = [], []
                points = 0
                for i in range(args.requests + 5):
                    t = time.perf_counter()
                    conn.request("GET", url)
                    resp = conn.getresponse()
                    body = resp.read()
                    took = time.perf_counter() - t
                    assert resp.status == 200, body[:300]
                    t = time.perf_counter()
                    in_process(path, params)
                    local = time.perf_counter() - t
                    if i >= 5:  # warm-up
                        http_t.append(took)
                        local_t.append(local)
                    points = len(json.loads(body)["points"])
                p50, p95 = percentiles(http_t)
                l50, _ = percentiles(local_t)
                print(f"{name:26} {points:6d} {p50 * 1e3:7.1f}ms {p95 * 1e3:6.1f}ms "
                      f"{l50 * 1e3:13.1f}ms {p50 / l50:5.2f}x")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
            store.close()


if __name__ == "__main__":
    main()
