"""The Dagster side: partitioned rollups, checks, schedules, sensors (``definitions.defs``)."""
