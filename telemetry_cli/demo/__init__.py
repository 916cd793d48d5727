"""``telemetry demo``: the whole system locally. ``command`` starts and stops it, ``prepare``
readies the config, ports, store and history first, ``watch`` shows it running,
``dagster_dev`` starts the local Dagster, ``dagster_progress`` follows its history backfill,
``receiver`` verifies and prints each webhook."""
