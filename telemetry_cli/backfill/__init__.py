"""``telemetry backfill`` (``command``), and what ``telemetry demo`` shares with it: which
partitions a time range covers and the launch (``launch``), a backfill's progress
(``progress``)."""
