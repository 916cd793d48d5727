"""Prometheus metrics of the daemon (names are part of the user-facing contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from telemetry_core.reasons import REASONS

OUTCOMES = ("stored", "partial", "dead_lettered")
disable_created_metrics()  # *_created series only clutter dashboards


class Metrics:
    """One registry per daemon instance, so tests and benchmarks can run several."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter(
            "telemetry_ingest_messages_total",
            "Messages finished (acknowledged), by outcome",
            ["outcome"],
            registry=r,
        )
        self.readings_stored = Counter(
            "telemetry_ingest_readings_stored_total", "Readings stored", registry=r
        )
        self.points_stored = Counter(
            "telemetry_ingest_points_stored_total",
            "Field values (tall points) stored",
            registry=r,
        )
        self.readings_rejected = Counter(
            "telemetry_ingest_readings_rejected_total",
            "Readings dead-lettered, by reason (a whole undecodable message counts once)",
            ["reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "telemetry_ingest_batch_seconds",
            "Time to commit one batch to the store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.delay_seconds = Histogram(
            "telemetry_ingest_delay_seconds",
            "From arrival in the stream to store commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "telemetry_ingest_consumer_lag",
            "Messages not yet acknowledged by the durable consumer (pending + ack pending)",
            registry=r,
        )
        self.lag_seconds = Gauge(
            "telemetry_ingest_lag_seconds",
            "Age of the oldest message the durable consumer has not acknowledged (0 when"
            " caught up)",
            registry=r,
        )
        self.dlq_messages = Gauge(
            "telemetry_ingest_dlq_messages",
            "Messages in the dead-letter stream IOT_DLQ",
            registry=r,
        )
        self.store_up = Gauge(
            "telemetry_ingest_store_up", "1 when the last store write succeeded", registry=r
        )
        self.nats_connected = Gauge(
            "telemetry_ingest_nats_connected", "1 while connected to NATS", registry=r
        )
        self.store_errors = Counter(
            "telemetry_ingest_store_errors_total", "Failed store write attempts", registry=r
        )
        self.late_windows = Counter(
            "telemetry_ingest_late_windows_marked_total",
            "Window marks written for late data (window, site)",
            registry=r,
        )
        self.redelivered = Counter(
            "telemetry_ingest_redelivered_total", "Messages received more than once", registry=r
        )
        self.keepalives = Counter(
            "telemetry_ingest_keepalives_total",
            "In-progress signals sent for batches still waiting for the store",
            registry=r,
        )
        self.faults = Counter(
            "telemetry_ingest_faults_total",
            "Unexpected errors (bugs) that stopped the daemon; each is logged with a traceback",
            registry=r,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome)
        for reason in REASONS:
            self.readings_rejected.labels(reason)
        self.store_up.set(1)
