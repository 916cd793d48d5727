"""The Dagster instance's PostgreSQL storage, keeping its connections between calls.

dagster-postgres opens a new connection for every statement it sends outside the
webserver (SQLAlchemy ``NullPool``): each event a run or the daemon writes costs a
connection set-up, two for an asset event. A week's backfill writes thousands of them
before its first run is even queued (one planned event per asset partition), and every run
writes as many materialisations and check evaluations. Measured on this machine: 7.0 ms
per planned event without a pool, 1.2 ms with one (docs/dagster.md, Benchmark).

``PooledPostgresStorage`` is ``DagsterPostgresStorage`` with the same configuration
(``storage: custom:`` in dagster.yaml) whose run, event log and schedule storages keep one
connection open per process and open more on demand for concurrent callers (closed when
returned). A pooled connection is checked before use (``pool_pre_ping``), so one that the
server dropped (a restart, an idle timeout, ``pg_terminate_backend``) is replaced instead
of failing the call. The webserver still applies its own pool settings on top
(``dagster-webserver --db-pool-*``), as it does for the stock storage.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

# Connections kept open per storage and process between calls; more are opened (and closed
# again) while concurrent threads need them.
POOL_SIZE = 1
POOL_MAX_OVERFLOW = 20
# Reconnect after an hour, as dagster-webserver does by default (server-side idle limits).
POOL_RECYCLE_SECONDS = 3600


def pooled_engine(postgres_url: str, token_provider: Any = None) -> sqlalchemy.engine.Engine:
    """The engine every storage of the instance uses: autocommit (as dagster-postgres'
    own), a small pool, connections checked on checkout."""
    return create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_pre_ping=True,
    )


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose storages pool their connections (module docstring)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            # dagster-postgres keeps the engine in ``_engine`` and reads it on every call
            # (its own optimize_for_webserver replaces it the same way).
            # tests/assets/test_instance_storage.py fails if that stops being true.
            storage._engine.dispose()
            storage._engine = pooled_engine(postgres_url, token_provider)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
