"""``telemetry demo`` and Dagster: the backfill of the seeded history, launched through the
webserver like ``telemetry backfill`` (visible under Overview -> Backfills) and followed,
then one regular run of the newest window, as the 15-minute schedule launches them.

Why that last run: a backfill run covers a range of partitions, and Dagster records an
asset check in a range run once, without a partition; per partition, the UI then lists the
check as skipped. A single-partition run records each check for its partition, so the
newest window shows its checks passed within the demo's first minutes instead of after
the first scheduled run (up to 17 minutes later).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from telemetry_assets.names import PARTITION_TAG

MATERIALISED = """
query { assetNodeOrError(assetKey: {path: ["rollup_15m"]}) {
  __typename ... on AssetNode { partitionStats { numMaterialized } } } }
"""
LOCATIONS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name } } } }
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConflict { message }
    ... on InvalidSubsetError { message }
  }
}
"""


@dataclass
class HistoryBackfill:
    """The Dagster backfill of the seeded hours, launched through the webserver like
    ``telemetry backfill`` (visible under Overview -> Backfills), and followed."""

    url: str
    backfill_id: str
    windows: int
    last_window: str  # partition key of the newest 15-minute window covered
    first_materialised: float | None = None
    done: bool = False

    @classmethod
    def launch(cls, url: str, start_ns: int, end_ns: int) -> HistoryBackfill:
        """Raises CliError when the webserver refuses it (the demo says so and goes on)."""
        from telemetry_cli.backfill.launch import (
            asset_grains,
            backfill_params,
            first_partition,
            launch,
            partition_ranges,
        )
        from telemetry_core.timeutil import now_ns
        from telemetry_core.windows import WINDOW_15M_NS, parse_partition_key

        now = now_ns()
        ranges = partition_ranges(start_ns, min(end_ns, now), now, first_partition(url))
        params = backfill_params(ranges, list(asset_grains()), None, "telemetry demo: history")
        backfill_id = launch(url, params, "history backfill")
        quarters = ranges["15m"]
        assert quarters is not None, "partition_ranges refuses a range without a 15-minute window"
        first, last = (parse_partition_key(k) for k in quarters)
        windows = (last - first) // WINDOW_15M_NS + 1
        return cls(url, backfill_id, windows, quarters[1])

    @property
    def ui(self) -> str:
        return f"{self.url}/runs/b/{self.backfill_id}?tab=partitions"

    def poll(self) -> tuple[str, int, int, int]:
        """(status, asset partitions targeted, materialised, failed); marks ``done``. The
        backfill's own counts move only at the daemon's next pass (up to 30 s after a run):
        the first materialised partition is asked of the asset itself."""
        from telemetry_cli.backfill.progress import DONE_BAD, DONE_OK, all_done, fetch, summarize
        from telemetry_cli.dagster_graphql import ask

        if self.first_materialised is None:
            node = ask(self.url, MATERIALISED)["assetNodeOrError"]
            if ((node.get("partitionStats") or {}).get("numMaterialized") or 0) > 0:
                self.first_materialised = time.monotonic()
        data = fetch(self.url, self.backfill_id)
        if data["__typename"] != "PartitionBackfill":
            self.done = True
            return data["__typename"], 0, 0, 0
        status, targeted, materialised, _, failed = summarize(data)
        self.done = status in DONE_OK or status in DONE_BAD or all_done(data) or bool(failed)
        return status, targeted, materialised, failed

    def run_newest_window(self) -> str:
        """One ``rollup_15m_job`` run of the newest window, as the schedule launches it (the
        follow sensor then runs its hour); returns the run id."""
        from telemetry_cli.dagster_graphql import ask
        from telemetry_cli.errors import CliError

        entries = ask(self.url, LOCATIONS)["workspaceOrError"].get("locationEntries") or []
        if not entries:
            raise CliError("the webserver has no code location")
        params = {
            "selector": {
                "repositoryLocationName": entries[0]["name"],
                "repositoryName": "__repository__",
                "pipelineName": "rollup_15m_job",
            },
            "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": self.last_window}]},
            "runConfigData": {},
            "mode": "default",
        }
        result = ask(self.url, LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = (result.get("message") or result["__typename"]).splitlines()[0]
            raise CliError(f"Dagster refused the run of {self.last_window}: {detail}")
        return result["run"]["runId"]


class DagsterProgress:
    """Follows Dagster from start-up to the end of the history backfill, one step per call
    (the watch loop must keep counting, and Ctrl-C must work, while Dagster starts)."""

    def __init__(
        self, event: Callable[[str], None], port: int, history: tuple[int, int] | None
    ) -> None:
        self.event, self.url, self.history = event, f"http://127.0.0.1:{port}", history
        self.ready = False
        self.backfill: HistoryBackfill | None = None
        self.next_poll = 0.0

    def step(self) -> None:
        from telemetry_cli.backfill.progress import DONE_OK
        from telemetry_cli.dagster_graphql import is_ready
        from telemetry_cli.errors import CliError

        if not self.ready:
            if not is_ready(self.url):
                return
            self.ready = True
            self.event(f"Dagster UI ready: {self.url}/asset-groups")
            if self.history is None:
                return
            try:
                self.backfill = HistoryBackfill.launch(self.url, *self.history)
            except CliError as exc:
                self.event(f"history backfill not launched: {exc}")
                return
            self.event(
                f"backfill of {self.backfill.windows} windows of history launched: "
                f"{self.backfill.ui}"
            )
        backfill = self.backfill
        if backfill is None or backfill.done or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + 2
        seen = backfill.first_materialised
        try:
            status, targeted, done, failed = backfill.poll()
        except CliError as exc:
            self.event(f"cannot follow the backfill: {exc}")
            backfill.done = True
            return
        if seen is None and backfill.first_materialised is not None:
            self.event(
                f"first partitions materialised: {self.url}/assets/rollup_15m?view=partitions"
            )
        if not backfill.done:
            return
        outcome = f"{status.lower()}, {done}/{targeted} asset partitions"
        self.event(f"history backfill {outcome}" + (f", {failed} failed" if failed else ""))
        if failed or status not in DONE_OK | {"REQUESTED"}:
            return
        try:
            run_id = backfill.run_newest_window()
        except CliError as exc:
            self.event(f"newest window not run: {exc}")
            return
        self.event(
            f"newest window {backfill.last_window} rolled up as the schedule does (checks per "
            f"partition): {self.url}/runs/{run_id}"
        )
