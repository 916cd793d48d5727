"""The data each end-to-end backfill case starts from (a plain module, not a conftest)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from tests.assets.rollup_helpers import fleet_points, ns

DAY2 = ns("2026-11-21T06:00:00Z")  # the site-scoped backfill's hour


def prepare_site_scope_case(env: dict[str, str], store) -> list[tuple]:
    """Day 2: roll up one hour in process, then change both sites' raw values; returns
    site-b's rows, which the site-scoped backfill must leave exactly as they are."""
    import dagster as dg

    from telemetry_assets.definitions import build_defs

    store.write_points(fleet_points(DAY2, 1, seed=1))
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        for key, value in env.items():
            mp.setenv(key, value)
        result = (
            build_defs()
            .resolve_job_def("rollup_15m_job")
            .execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "2026-11-21-06:00",
                    "dagster/asset_partition_range_end": "2026-11-21-06:45",
                },
            )
        )
        assert result.success
    before_b = store.read_rollups("15m", DAY2, DAY2 + 3600 * 10**9, site_id="site-b").rows()
    assert before_b
    store.write_points(fleet_points(DAY2, 1, seed=2))  # new values for both sites
    # Those writes marked the windows late; the running late-data sensor would rightly
    # recompute every site. Clear the marks: this case is about the --site scope.
    marks = store.late_windows(1000)
    store.clear_late_windows([(m.window_start, m.site_id) for m in marks], 2**62)
    return before_b


DAY3 = ns("2026-11-19T06:00:00Z")  # the late-data case's hour
LATE_POINT = ("energy", "site-a", "m1", "power_w", ns("2026-11-19T06:20:00Z"), 12345.0)


def prepare_late_data_case(env: dict[str, str], store) -> None:
    """Day 3: an hour rolled up at every level, then a late point lands in 06:15."""
    import dagster as dg

    from telemetry_assets.definitions import build_defs

    store.write_points(fleet_points(DAY3, 1, seed=3))
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        for key, value in env.items():
            mp.setenv(key, value)
        for job, start, end in (
            ("rollup_15m_job", "2026-11-19-06:00", "2026-11-19-06:45"),
            ("rollup_1h_job", "2026-11-19-06:00", "2026-11-19-06:00"),
        ):
            assert (
                build_defs()
                .resolve_job_def(job)
                .execute_in_process(
                    instance=instance,
                    tags={
                        "dagster/asset_partition_range_start": start,
                        "dagster/asset_partition_range_end": end,
                    },
                )
                .success
            )
    result = store.write_points([LATE_POINT])
    assert result.late_windows == ((ns("2026-11-19T06:15:00Z"), "site-a"),)


DAY4 = ns("2026-11-18T06:00:00Z")  # the hour whose backfill must fail
HOUR_NS = 3600 * 10**9
REFUSAL = "this store refuses the 2026-11-18 06:00 hour"


def prepare_refusing_store_case(env: dict[str, str], store) -> None:
    """Day 4: raw points, and a store that refuses every 15-minute row of that hour (a
    SQLite trigger aborts the insert, as a full disk or a broken table would)."""
    store.write_points(fleet_points(DAY4, 1, seed=4))
    path = env["TELEMETRY_STORE_URL"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            f"CREATE TRIGGER refuse_day4 BEFORE INSERT ON rollup_15m "
            f"WHEN NEW.window_start >= {DAY4} AND NEW.window_start < {DAY4 + HOUR_NS} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        )
