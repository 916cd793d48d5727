"""The PostgreSQL store (``postgresql://user[:password]@host[:port]/<database>``, also
``postgres://``): the production store, any number of daemons writing at once.

``raw.py`` raw points and late marks (the store class), ``rollups.py`` the rollup tables,
``retention.py`` retention's primitives, ``connection.py`` the connection, its
transaction and error translation, ``schema.py`` the layout and raw's day partitions.

Stream order is kept by the database: the merge only replaces a stored point with one
whose JetStream sequence is not lower, so redeliveries and a second daemon committing out
of order never bring an older value back.
"""

from telemetry_core.store.postgres.raw import PostgresStore

__all__ = ["PostgresStore"]
