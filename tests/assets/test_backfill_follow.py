"""`telemetry backfill` ends when the data is complete: every targeted partition in the range
of a succeeded run of the backfill, read from the runs (the backfill's own counts wait for
the daemon's next pass, up to 30 s later)."""

from __future__ import annotations

from telemetry_assets.names import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from telemetry_cli import dagster_graphql
from telemetry_cli.backfill import command, progress

TARGETS = {
    "rollup_15m": ("2026-11-20-06:00", "2026-11-20-07:45"),
    "rollup_1h": ("2026-11-20-06:00", "2026-11-20-07:00"),
}


def run(status: str, assets: list[str], start: str, end: str | None = None) -> dict:
    tags = (
        [{"key": PARTITION_TAG, "value": start}]
        if end is None
        else [
            {"key": RANGE_START_TAG, "value": start},
            {"key": RANGE_END_TAG, "value": end},
        ]
    )
    return {"status": status, "assetSelection": [{"path": [a]} for a in assets], "tags": tags}


def test_complete_only_when_every_targeted_partition_has_a_succeeded_run():
    quarters = run("SUCCESS", ["rollup_15m"], "2026-11-20-06:00", "2026-11-20-07:45")
    hours = run("SUCCESS", ["rollup_1h"], "2026-11-20-06:00", "2026-11-20-07:00")
    assert progress.data_complete({"runs": [quarters, hours]}, TARGETS)
    assert not progress.data_complete({"runs": [quarters]}, TARGETS)  # hours not run yet
    assert not progress.data_complete({"runs": []}, TARGETS)
    running = {**hours, "status": "STARTED"}
    assert not progress.data_complete({"runs": [quarters, running]}, TARGETS)
    failed = {**hours, "status": "FAILURE"}
    assert not progress.data_complete({"runs": [quarters, failed]}, TARGETS)


def test_partial_ranges_and_single_partition_runs_add_up():
    first = run("SUCCESS", ["rollup_15m"], "2026-11-20-06:00", "2026-11-20-06:45")
    hours = run("SUCCESS", ["rollup_1h"], "2026-11-20-06:00", "2026-11-20-07:00")
    singles = [run("SUCCESS", ["rollup_15m"], k) for k in ("2026-11-20-07:00", "2026-11-20-07:15")]
    assert not progress.data_complete({"runs": [first, hours, *singles]}, TARGETS)
    last = run("SUCCESS", ["rollup_15m"], "2026-11-20-07:30", "2026-11-20-07:45")
    assert progress.data_complete({"runs": [first, hours, *singles, last]}, TARGETS)
    # a run of another asset over the same range does not count for this one
    other = run("SUCCESS", ["site_15m"], "2026-11-20-06:00", "2026-11-20-07:45")
    assert not progress.data_complete({"runs": [other, hours]}, TARGETS)


def test_follow_stops_at_data_complete_before_the_daemon_marks_it(monkeypatch, capsys):
    quarters = run("SUCCESS", ["rollup_15m"], "2026-11-20-06:00", "2026-11-20-07:45")
    hours = run("SUCCESS", ["rollup_1h"], "2026-11-20-06:00", "2026-11-20-07:00")
    lagging = {  # the daemon has not counted the hourly run yet
        "__typename": "PartitionBackfill",
        "status": "REQUESTED",
        "error": None,
        "unfinishedRuns": [],
        "runs": [quarters, hours],
        "assetBackfillData": {
            "assetBackfillStatuses": [
                {"numPartitionsTargeted": 8, "numPartitionsMaterialized": 8},
                {"numPartitionsTargeted": 2, "numPartitionsInProgress": 2},
            ]
        },
    }
    calls = []

    def answer(url, query, variables):
        calls.append(variables)
        return {"partitionBackfillOrError": lagging}

    monkeypatch.setattr(dagster_graphql, "ask", answer)
    assert command.follow("http://x", "abc", 0, TARGETS) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1
    assert "10/10 asset partitions done, 0 running" in out
    assert "backfill abc completed (data complete" in out
