"""Process harnesses only tests and benchmarks start: a local NATS cluster, an influxd."""
