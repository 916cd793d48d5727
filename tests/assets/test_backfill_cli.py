"""`telemetry backfill` without a webserver: ranges, exit codes, one-line errors."""

from __future__ import annotations

import pytest

from telemetry_cli import dagster_graphql
from telemetry_cli.backfill import command, launch
from telemetry_cli.errors import CliError
from telemetry_cli.main import main
from tests.assets.rollup_helpers import ns

NOW = ns("2026-11-20T10:07:00Z")
FIRST = ns("2026-01-01T00:00:00Z")  # the server's first partition (default [rollups] start)


def test_ranges_cover_overlapping_windows_up_to_the_last_complete_one():
    got = launch.partition_ranges(
        ns("2026-11-20T06:10:00Z"), ns("2026-11-20T08:00:00Z"), NOW, FIRST
    )
    assert got == {
        "15m": ("2026-11-20-06:00", "2026-11-20-07:45"),
        "1h": ("2026-11-20-06:00", "2026-11-20-07:00"),
    }
    clamped = launch.partition_ranges(ns("2026-11-20T09:00:00Z"), NOW + 10**12, NOW, FIRST)
    assert clamped == {
        "15m": ("2026-11-20-09:00", "2026-11-20-09:45"),
        "1h": ("2026-11-20-09:00", "2026-11-20-09:00"),
    }
    # 1 ns before 10:00 touches the 09:45 window and the 09:00 hour; 10:00 is still open
    partial = launch.partition_ranges(ns("2026-11-20T10:00:00Z") - 1, NOW, NOW, FIRST)
    assert partial == {
        "15m": ("2026-11-20-09:45", "2026-11-20-09:45"),
        "1h": ("2026-11-20-09:00", "2026-11-20-09:00"),
    }
    # inside the open hour: the quarters that ended, no hour yet
    late = launch.partition_ranges(
        ns("2026-11-20T10:00:00Z"), NOW + 10**12, ns("2026-11-20T10:20:00Z"), FIRST
    )
    assert late == {"15m": ("2026-11-20-10:00", "2026-11-20-10:00"), "1h": None}


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-20T08:00:00Z", "2026-11-20T07:00:00Z", "--end must be after --start"),
        ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "before the first partition"),
        ("2026-11-20T10:01:00Z", "2026-11-20T10:05:00Z", "no complete 15-minute window"),
    ],
)
def test_bad_ranges(start, end, message):
    with pytest.raises(CliError, match=message):
        launch.partition_ranges(ns(start), ns(end), NOW, FIRST)


def test_ranges_start_at_the_servers_first_partition():
    """A code location configured with [rollups] start = 2026-11-20T07:00Z: the range is
    clamped there, and a range ending before it is refused."""
    first = ns("2026-11-20T07:00:00Z")
    got = launch.partition_ranges(
        ns("2026-11-20T05:00:00Z"), ns("2026-11-20T08:00:00Z"), NOW, first
    )
    assert got == {
        "15m": ("2026-11-20-07:00", "2026-11-20-07:45"),
        "1h": ("2026-11-20-07:00", "2026-11-20-07:00"),
    }
    with pytest.raises(CliError, match=r"before the first partition \(2026-11-20T07:00:00Z\)"):
        launch.partition_ranges(ns("2026-11-20T05:00:00Z"), first, NOW, first)


def test_first_partition_is_asked_from_the_webserver(monkeypatch):
    answers = {
        "assetNodeOrError": {
            "__typename": "AssetNode",
            "partitionKeysByDimension": [{"partitionKeys": ["2026-06-01-05:00"]}],
        }
    }
    seen = []
    monkeypatch.setattr(
        dagster_graphql, "ask", lambda url, query, variables: seen.append(variables) or answers
    )
    assert launch.first_partition("http://x") == ns("2026-06-01T05:00:00Z")
    assert seen == [{"key": {"path": ["rollup_15m"]}}]
    answers["assetNodeOrError"] = {"__typename": "AssetNotFoundError"}
    with pytest.raises(CliError, match="no partitioned asset rollup_15m"):
        launch.first_partition("http://x")


def test_params_carry_the_site_tag_and_each_grain_range():
    ranges = {"15m": ("a", "b"), "1h": None}
    params = launch.backfill_params(ranges, ["rollup_15m", "rollup_1h"], "site-a", "t")
    assert params["partitionsByAssets"] == [
        {"assetKey": {"path": ["rollup_15m"]}, "partitions": {"range": {"start": "a", "end": "b"}}}
    ]
    assert params["tags"] == [{"key": "telemetry/site", "value": "site-a"}]


def progress(status: str, done: int, failed: int = 0, running: int = 0) -> dict:
    return {
        "partitionBackfillOrError": {
            "__typename": "PartitionBackfill",
            "status": status,
            "error": {"message": "boom\ntrace"} if failed else None,
            "unfinishedRuns": [{"runId": "r"}] if running else [],
            "assetBackfillData": {
                "assetBackfillStatuses": [
                    {
                        "numPartitionsTargeted": 4,
                        "numPartitionsMaterialized": done,
                        "numPartitionsInProgress": running,
                        "numPartitionsFailed": failed,
                    }
                ]
            },
        }
    }


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (progress("COMPLETED_SUCCESS", 4), 0),
        (progress("COMPLETED_FAILED", 3, failed=1), 1),
        (progress("CANCELED", 1), 1),
        (progress("COMPLETED", 3, failed=1), 1),
    ],
)
def test_follow_exit_codes(monkeypatch, capsys, final, code):
    answers = iter(
        [progress("REQUESTED", 0, running=4), progress("REQUESTED", 2, running=2), final]
    )
    monkeypatch.setattr(dagster_graphql, "ask", lambda url, query, variables: next(answers))
    assert command.follow("http://x", "abc", 0) == code
    out = capsys.readouterr()
    assert "2/4 asset partitions done" in out.out
    if code:
        assert out.err.count("\n") == 1 and "Traceback" not in out.err


FIRST_KEY = {
    "assetNodeOrError": {
        "__typename": "AssetNode",
        "partitionKeysByDimension": [{"partitionKeys": ["2026-01-01-00:00"]}],
    }
}


def test_refused_launch_is_one_line(monkeypatch, capsys):
    refused = {
        "launchPartitionBackfill": {
            "__typename": "PartitionKeysNotFoundError",
            "message": "Partition keys x not found\\nmore",
        }
    }
    monkeypatch.setattr(
        dagster_graphql,
        "ask",
        lambda url, query, variables: FIRST_KEY if query == launch.FIRST_PARTITION else refused,
    )
    code = main(["backfill", "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T07:00:00Z"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("telemetry backfill: error: Dagster refused the backfill: Partition keys")
    assert err.count("\n") == 1


def test_unreachable_webserver_is_one_line(capsys):
    code = main(
        ["backfill", "--start", "2026-11-20T06:00:00Z", "--end", "2026-11-20T07:00:00Z",
         "--url", "http://127.0.0.1:9"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dagster webserver" in err and err.count("\n") == 1
