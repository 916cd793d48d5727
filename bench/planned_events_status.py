"""What a user sees of a failed backfill, with and without one planned event per asset.

    .venv/bin/python bench/planned_events_status.py [--instance postgres|sqlite]

``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1`` makes Dagster write one
ASSET_MATERIALIZATION_PLANNED event per asset and run instead of one per partition (the
2,016 events that delay a week's backfill). Dagster's own comment says partitions are then
"not marked as failed if the run fails". This checks it, from the instance's own answers:
for each setting, a fresh deployment (the production topology on the local PostgreSQL by
default), an hour of raw points, a store that refuses the 06:15 quarter's rows (a SQLite
trigger, as a full disk would), and one backfill of the six rollup assets over the hour.
Its 15-minute run fails; then, through GraphQL:

* the backfill's page: per asset, partitions targeted / materialised / failed / in progress
  (``assetBackfillData.assetBackfillStatuses``);
* each asset's page: the partition bar (``assetPartitionStatuses``) and the catalog counts
  (``partitionStats``), sampled every 0.3 s while the run is in progress and once at the end;
* the instance API: ``DagsterInstance.get_status_by_partition`` for the same partitions.

Prints both settings side by side; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from telemetry_core.store.sqlite import SqliteStore  # noqa: E402
from tests.assets.rollup_helpers import CONFIG_TOML, fleet_points, ns  # noqa: E402

HOUR = ns("2026-11-18T06:00:00Z")
REFUSED = ns("2026-11-18T06:15:00Z")
QUARTERS = ["2026-11-18-06:00", "2026-11-18-06:15", "2026-11-18-06:30", "2026-11-18-06:45"]
ASSETS = ["rollup_15m", "site_15m", "portfolio_15m", "rollup_1h", "site_1h", "portfolio_1h"]
FLAG = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"

BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status
  runs { runId status }
  assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
    assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed
    numPartitionsInProgress } } } } } }
"""
ASSET = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  partitionStats { numMaterialized numFailed numMaterializing }
  assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } }
} } }
"""


def prepare(folder: Path) -> str:
    path = folder / "store.db"
    store = SqliteStore(str(path))
    store.write_points(fleet_points(HOUR, 1, seed=4))
    store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON rollup_15m WHEN NEW.window_start = {REFUSED} "
            "BEGIN SELECT RAISE(ABORT, 'this store refuses the 06:15 quarter'); END"
        )
    (folder / "telemetry.toml").write_text(CONFIG_TOML)
    return f"sqlite:///{path}"


def asset_view(url: str, asset: str) -> dict:
    from telemetry_cli.dagster_local import graphql

    node = graphql(url, ASSET, {"key": {"path": [asset]}})["assetNodeOrError"]
    ranges = (node.get("assetPartitionStatuses") or {}).get("ranges") or []
    in_hour = [r for r in ranges if r["endKey"] >= QUARTERS[0] and r["startKey"] <= QUARTERS[-1]]
    return {"stats": node.get("partitionStats"), "ranges": in_hour}


def one_setting(folder: Path, flag: bool, instance: str) -> dict:
    import dagster as dg
    from bench_rollups import dagster_deployment
    from telemetry_cli.dagster_local import graphql

    from telemetry_cli.backfill import LAUNCH, backfill_params
    from telemetry_core.config import load_config

    folder.mkdir(parents=True)
    store_url = prepare(folder)
    env = {"TELEMETRY_STORE_URL": store_url, "TELEMETRY_CONFIG": str(folder / "telemetry.toml")}
    if flag:
        os.environ[FLAG] = "1"
    else:
        os.environ.pop(FLAG, None)
    out: dict = {"in_progress_seen": {a: 0 for a in ASSETS}}
    with dagster_deployment(folder, env, instance) as (url, home, _log):
        ranges = {"15m": (QUARTERS[0], QUARTERS[-1]), "1h": (QUARTERS[0], QUARTERS[0])}
        params = backfill_params(ranges, ASSETS, None, "planned events")
        # No automatic retries (dagster.yaml allows two): each retry fails the same way and
        # only delays the final state this compares.
        params["tags"] = [{"key": "dagster/max_retries", "value": "0"}]
        backfill_id = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"][
            "backfillId"
        ]
        deadline = time.time() + 600
        while time.time() < deadline:
            data = graphql(url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            for a in ASSETS[:3]:  # the 15-minute run's assets: in progress while it runs
                view = asset_view(url, a)
                busy = sum(
                    QUARTERS.index(r["endKey"]) - QUARTERS.index(r["startKey"]) + 1
                    for r in view["ranges"]
                    if r["status"] == "MATERIALIZING"
                    and r["startKey"] in QUARTERS
                    and r["endKey"] in QUARTERS
                )
                out["in_progress_seen"][a] = max(out["in_progress_seen"][a], busy)
            if data["status"] not in ("REQUESTED",):
                break
            time.sleep(0.3)
        out["backfill_status"] = data["status"]
        out["runs"] = [r["status"] for r in data["runs"]]
        out["backfill"] = {
            s["assetKey"]["path"][0]: (
                s["numPartitionsTargeted"],
                s["numPartitionsMaterialized"],
                s["numPartitionsFailed"],
                s["numPartitionsInProgress"],
            )
            for s in data["assetBackfillData"]["assetBackfillStatuses"]
        }
        out["assets"] = {a: asset_view(url, a) for a in ASSETS}
        os.environ["TELEMETRY_CONFIG"] = env["TELEMETRY_CONFIG"]
        from telemetry_assets.partitions import build_partitions

        partitions = build_partitions(load_config().rollups.start_ns)
        with dg.DagsterInstance.from_config(str(home)) as inst:
            out["instance"] = {
                a: {
                    k: v.value if v is not None else "missing"
                    for k, v in (
                        inst.get_status_by_partition(
                            dg.AssetKey(a),
                            QUARTERS if a.endswith("15m") else QUARTERS[:1],
                            partitions["15m" if a.endswith("15m") else "1h"],
                        )
                        or {}
                    ).items()
                }
                for a in ASSETS
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--dir", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="planned-events-"))
    results = {}
    for flag in (False, True):
        name = "subset" if flag else "per_partition"
        results[flag] = one_setting(folder / name, flag, args.instance)
        (folder / f"{name}.json").write_text(json.dumps(results[flag], indent=1))
    for flag, r in results.items():
        print(
            f"\n{FLAG}={'1' if flag else 'unset'}: backfill {r['backfill_status']}, runs {r['runs']}"
        )
        print("  asset            backfill page (targeted, materialised, failed, in progress)")
        print("                   | asset page: catalog counts, partition bar over 06:00-06:45")
        print("                   | instance.get_status_by_partition | in progress seen (max)")
        for a in ASSETS:
            view = r["assets"][a]
            bar = ", ".join(
                f"{x['startKey'][-5:]}..{x['endKey'][-5:]} {x['status']}" for x in view["ranges"]
            )
            print(f"  {a:<16} {r['backfill'].get(a)}")
            print(f"                   | {view['stats']} | {bar or 'nothing (missing)'}")
            print(
                f"                   | {r['instance'][a] or 'nothing'} | {r['in_progress_seen'].get(a, '-')}"
            )
    print(f"\nwork folder: {folder}")


if __name__ == "__main__":
    main()
