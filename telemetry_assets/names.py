"""The pool and the run tags the code location, the instance files and the CLI agree on.

Plain strings, no Dagster import: ``telemetry backfill`` tags a site-scoped backfill with
``SITE_TAG`` and reads the runs' partition tags over GraphQL without loading Dagster.
"""

from __future__ import annotations

# The pool every store-reading step declares (see dagster.yaml): it caps concurrent store
# work across all runs.
TSDB_POOL = "tsdb"

# Our tags.
# A run tagged with a site rewrites only that site's rows (a site-scoped backfill after
# one site's outage must not touch the others). Portfolio assets ignore it: the portfolio
# depends on every site, so it is always recomputed whole.
SITE_TAG = "telemetry/site"
# Set by the late-data sensor: how many late points the run folds in (for the UI plots).
LATE_POINTS_TAG = "telemetry/late_points"
# Set by the late-data sensor on every run of one batch, so it can find them again.
LATE_BATCH_TAG = "telemetry/late_batch"
# The late-data sensor's stage of a batch (15m, then 1h).
STAGE_TAG = "telemetry/late_stage"
# Set by the anomaly sensor: the rollup run whose windows an anomaly run evaluates.
SOURCE_RUN_TAG = "telemetry/source_run"
FIRST_TAG = "telemetry/window_first"
LAST_TAG = "telemetry/window_last"
WINDOWS_TAG = "telemetry/windows"
# What a non-rollup job is for (alerts, anomalies, retention): filterable in the runs view.
ROLE_TAG = "telemetry/role"

# Dagster's own tags.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
PRIORITY_TAG = "dagster/priority"
WILL_RETRY_TAG = "dagster/will_retry"  # set on a failed run the retry daemon will re-launch
