"""PostgreSQL for tests: the machine's server (``TELEMETRY_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``, an account that may create databases),
and a throwaway database per test or fixture, dropped afterwards.

Every user of PostgreSQL in the suite (the ``postgresql://`` store, the alerts database,
Dagster instances) takes its database from here, so one variable points the whole suite
at another server. Unreachable: ``PostgresUnavailable``; fixtures turn it into
``need_service`` (a skip, a failure under ``TELEMETRY_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

ADMIN_URL = os.environ.get(
    "TELEMETRY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_parts = urlsplit(ADMIN_URL)
#: host, port and user of the test server (Dagster's instance takes them as variables)
PG = {
    "host": _parts.hostname or "127.0.0.1",
    "port": _parts.port or 5432,
    "user": _parts.username or "postgres",
}


class PostgresUnavailable(RuntimeError):
    """The test server cannot be reached (the caller decides: skip or fail)."""


def database_url(name: str) -> str:
    """The admin URL pointed at database ``name`` (same host, port, user, password)."""
    return urlunsplit(_parts._replace(path=f"/{name}"))


def admin():
    """An autocommit psycopg connection to the admin database."""
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(
            f"PostgreSQL at {PG['host']}:{PG['port']} (user {PG['user']}) unreachable "
            f"(set TELEMETRY_TEST_POSTGRES_URL): {str(exc).strip()}"
        ) from None


@contextmanager
def temporary_database(prefix: str = "telemetry_test") -> Iterator[str]:
    """A fresh database, dropped (with any sessions still on it) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = admin()
    try:
        conn.execute(f'CREATE DATABASE "{name}"')  # a generated name, never user input
        yield name
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
