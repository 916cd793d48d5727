"""Helpers shared by the Dagster tests (a plain module next to them, not a conftest)."""

from __future__ import annotations

import textwrap

import dagster as dg

from telemetry_assets.names import RANGE_END_TAG, RANGE_START_TAG
from telemetry_core.timeutil import parse_rfc3339
from tests.conftest import free_port, need_service  # noqa: F401 (re-exported)

CONFIG_TOML = textwrap.dedent(
    """
    [sites.site-a]
    timezone = "Europe/Berlin"
    work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "18:00" }
    expected_devices = 3

    [sites.site-b]
    timezone = "America/New_York"
    work_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }

    [fields]
    "energy.energy_kwh" = "delta"
    "energy.power_w" = "gauge"
    "occupancy.occupied" = "state"
    """
)


def ns(text: str) -> int:
    return parse_rfc3339(text)


def run_job(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    *,
    key: str | None = None,
    start: str | None = None,
    end: str | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a rollup job for one partition key or an inclusive key range."""
    all_tags = dict(tags or {})
    if start is not None:
        all_tags.update({RANGE_START_TAG: start, RANGE_END_TAG: end or start})
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, tags=all_tags
    )
    assert result.success
    return result


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the run's failed steps and their causes: a failure test asserts
    *why* it failed, not only that it did."""
    messages = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.is_step_failure else None
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return "\n".join(messages)


def run_all(defs, instance, *, q_start, q_end, h_start, h_end, tags=None) -> None:
    """Every rollup level over a range: quarters first, then hours (as a backfill does)."""
    run_job(defs, "rollup_15m_job", instance, start=q_start, end=q_end, tags=tags)
    run_job(defs, "rollup_1h_job", instance, start=h_start, end=h_end, tags=tags)


LEVELS = ("15m", "site_15m", "portfolio_15m", "1h", "site_1h", "portfolio_1h")
FAR = (0, 2**62)


def snapshot(store) -> dict[str, list[tuple]]:
    """Every rollup row of every level (to compare stores or runs)."""
    return {level: store.read_rollups(level, *FAR).rows() for level in LEVELS}


def fleet_points(start_ns: int, hours: int, *, seed: int = 7, step_s: int = 300) -> list[tuple]:
    """Two sites x three meters, a reading every ``step_s`` seconds, two fields."""
    import random

    rng = random.Random(seed)
    points = []
    for site in ("site-a", "site-b"):
        for device in ("m1", "m2", "m3"):
            for i in range(hours * 3600 // step_s):
                t = start_ns + i * step_s * 1_000_000_000 + rng.randrange(0, 10**9)
                points.append(("energy", site, device, "power_w", t, rng.uniform(0, 500)))
                points.append(("energy", site, device, "energy_kwh", t, rng.uniform(0, 1)))
    return points


def recompute(store, start_ns: int, end_ns: int, config) -> dict[str, list[tuple]]:
    """From-scratch rollups of the raw points, straight from the shared maths."""
    from telemetry_core.rollup import combine, rollup_raw, with_work_hours
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS

    raw = store.read_points(start_ns, end_ns)
    q = rollup_raw(raw, WINDOW_15M_NS)
    h = combine(q, HOUR_NS)
    out = {
        "15m": with_work_hours(q, config),
        "site_15m": with_work_hours(combine(q, WINDOW_15M_NS, "site"), config, "site"),
        "1h": with_work_hours(h, config),
        "site_1h": with_work_hours(combine(h, HOUR_NS, "site"), config, "site"),
    }
    out["portfolio_15m"] = with_work_hours(
        combine(out["site_15m"], WINDOW_15M_NS, "portfolio"), config, "portfolio"
    )
    out["portfolio_1h"] = with_work_hours(
        combine(out["site_1h"], HOUR_NS, "portfolio"), config, "portfolio"
    )
    return {
        k: v.sort("window_start", "measurement", "site_id", "device_id", "field")
        for k, v in out.items()
    }


def assert_rows_close(got, want, *, rel: float = 1e-9) -> None:
    """Same keys and partials; float sums may differ in summation order only."""
    from polars.testing import assert_frame_equal

    cols = [c for c in want.columns if c in got.columns]
    assert_frame_equal(
        got.select(cols),
        want.select(cols),
        check_exact=False,
        rel_tol=rel,
    )
