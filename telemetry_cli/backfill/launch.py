"""Launching a backfill: which partitions of which rollup assets a time range covers, from
the running code location's first partition up to the last complete window, and the
``launchPartitionBackfill`` mutation the UI sends too."""

from __future__ import annotations

from telemetry_assets.names import SITE_TAG

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
    ... on RunConflict { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""

FIRST_PARTITION = """
query First($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionKeysByDimension(startIdx: 0, endIdx: 1) { partitionKeys } }
  }
}
"""


def asset_grains() -> dict[str, str]:
    """Rollup asset -> partition grain (``15m`` or ``1h``), from the one spec table."""
    from telemetry_core.rollup import ROLLUP_SPECS

    return {spec.asset: spec.grain for spec in ROLLUP_SPECS}


def partition_ranges(
    start_ns: int, end_ns: int, now: int, first_partition: int
) -> dict[str, tuple[str, str] | None]:
    """First and last partition key per grain overlapping ``[start, end)``, from the first
    partition (the code location's ``[rollups] start``) up to the last complete window (the
    current one is not a partition yet)."""
    from telemetry_cli.errors import CliError
    from telemetry_core.timeutil import format_rfc3339
    from telemetry_core.windows import HOUR_NS, WINDOW_15M_NS, partition_key, window_start

    if end_ns <= start_ns:
        raise CliError("--end must be after --start")
    if end_ns <= first_partition:
        raise CliError(
            f"the range ends before the first partition ({format_rfc3339(first_partition)})"
        )
    start_ns = max(start_ns, first_partition)
    out: dict[str, tuple[str, str] | None] = {}
    for grain, width in (("15m", WINDOW_15M_NS), ("1h", HOUR_NS)):
        first = window_start(start_ns, width)
        last = min(window_start(end_ns - 1, width), window_start(now, width) - width)
        out[grain] = (partition_key(first), partition_key(last)) if last >= first else None
    if out["15m"] is None:
        raise CliError("the range holds no complete 15-minute window yet")
    return out


def backfill_params(
    ranges: dict[str, tuple[str, str] | None], assets: list[str], site: str | None, title: str
) -> dict:
    grains = asset_grains()
    selectors = []
    for asset in assets:
        grain_range = ranges[grains[asset]]
        if grain_range is None:
            continue
        start, end = grain_range
        selectors.append(
            {"assetKey": {"path": [asset]}, "partitions": {"range": {"start": start, "end": end}}}
        )
    params: dict = {"partitionsByAssets": selectors, "title": title}
    if site:
        params["tags"] = [{"key": SITE_TAG, "value": site}]
    return params


def first_partition(url: str) -> int:
    """Where the running code location's partitions start (its ``[rollups] start``): asked
    from the webserver, so a CLI with another config cannot disagree with it."""
    from telemetry_cli.dagster_graphql import ask
    from telemetry_cli.errors import CliError
    from telemetry_core.rollup import ROLLUP_SPECS
    from telemetry_core.windows import parse_partition_key

    asset = ROLLUP_SPECS[0].asset
    node = ask(url, FIRST_PARTITION, {"key": {"path": [asset]}})["assetNodeOrError"]
    dims = node.get("partitionKeysByDimension") or []
    keys = dims[0].get("partitionKeys") if dims else None
    if node["__typename"] != "AssetNode" or not keys:
        raise CliError(
            f"the Dagster webserver at {url} has no partitioned asset {asset}: "
            "is it running the telemetry code location (telemetry_assets.definitions)?"
        )
    return parse_partition_key(keys[0])


def launch(url: str, params: dict, what: str = "backfill") -> str:
    """Launch the backfill ``params`` describe; returns its id. A refusal is one line
    (``CliError``: "Dagster refused the <what>: ...")."""
    from telemetry_cli.dagster_graphql import ask
    from telemetry_cli.errors import CliError

    result = ask(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        detail = result.get("message") or result["__typename"]
        raise CliError(f"Dagster refused the {what}: {detail.strip().splitlines()[0]}")
    return result["backfillId"]
