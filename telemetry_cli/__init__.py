"""The ``telemetry`` console command."""
