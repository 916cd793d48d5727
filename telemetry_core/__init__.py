"""Code shared by the ingest daemon and the Dagster project.

This package must import neither ``dagster`` nor ``nats`` (a test guards it): the daemon
stays light, and the maths in here is the single source of truth for both sides.
"""
