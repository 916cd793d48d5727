"""Raw points: written by the ingest daemon, never materialised by Dagster."""

import dagster as dg

RAW_POINTS = dg.AssetKey("raw_points")


def build_raw_points(store_kind: str) -> dg.AssetSpec:
    """The external root of the lineage graph, labelled with the configured store's kind
    (``sqlite`` or ``influxdb``), so the UI shows where the points really live."""
    return dg.AssetSpec(
        RAW_POINTS,
        group_name="ingest",
        description=(
            "Raw tall points (time, measurement, site_id, device_id, field, value) written by "
            "the ingest daemon from NATS JetStream into the store at TELEMETRY_STORE_URL. "
            "External: the root of the lineage graph, not materialised by Dagster."
        ),
        kinds={store_kind},
    )
