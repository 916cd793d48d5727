"""One store resource, built from the store URL: environments differ by variables, not code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from telemetry_core.config import Config, load_config
from telemetry_core.errors import ConfigError
from telemetry_core.store import DEFAULT_STORE_URL, Store, open_store, store_backend


def store_kind(url: str | None) -> str:
    """The Dagster kind (UI icon) of the store a URL names, checked when the code
    location loads, so a typo in the scheme fails the load instead of every run."""
    return store_backend(url or DEFAULT_STORE_URL)


class TelemetryStore(dg.ConfigurableResource):
    """The time-series store (``TELEMETRY_STORE_URL``) and the TOML config (``TELEMETRY_CONFIG``).

    Both fields may be left unset: they then resolve from the environment *when a run
    opens the store* (falling back to the embedded ``sqlite:///.state/telemetry.db`` and an
    all-defaults config), so ``dagster dev`` works on a bare checkout and nothing reads the
    environment at import.
    """

    store_url: str | None = None
    config_path: str | None = None

    def resolved_url(self) -> str | None:
        return self.store_url or os.environ.get("TELEMETRY_STORE_URL") or None

    @contextmanager
    def open(self) -> Iterator[Store]:
        store = open_store(self.resolved_url())
        try:
            yield store
        finally:
            store.close()

    def load_config(self) -> Config:
        """The TOML config. A mistake in it fails the run with its one-line message (which
        names the key), not a traceback."""
        try:
            return load_config(self.config_path or os.environ.get("TELEMETRY_CONFIG") or None)
        except ConfigError as exc:
            raise dg.Failure(str(exc)) from None
