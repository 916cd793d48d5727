"""Raw points: written by the ingest daemon, never materialised by Dagster."""

import dagster as dg

raw_points = dg.AssetSpec(
    "raw_points",
    group_name="ingest",
    description=(
        "Raw tall points (time, measurement, site_id, device_id, field, value) written by "
        "the ingest daemon from NATS JetStream into the store at TELEMETRY_STORE_URL. "
        "External: the root of the lineage graph, not materialised by Dagster."
    ),
    kinds={"sqlite"},
)
