"""The NATS ingest daemon: decode, validate, batch, store, acknowledge after commit.

Imports neither Dagster nor polars (a test guards it): it must start fast and stay small.
"""
