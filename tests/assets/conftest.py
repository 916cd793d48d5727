"""Fixtures for the Dagster side: store and config in the environment, a test instance."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from telemetry_core.store import Store, open_store
from tests.assets.rollup_helpers import CONFIG_TOML

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def set_env(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Store URL and config in the environment, as a deployment sets them."""
    config = folder / "telemetry.toml"
    config.write_text(CONFIG_TOML)
    values = {
        "TELEMETRY_STORE_URL": f"sqlite:///{folder / 'telemetry.db'}",
        "TELEMETRY_CONFIG": str(config),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return set_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The same, shared by a module whose tests only read one seeded store."""
    with pytest.MonkeyPatch.context() as mp:
        yield set_env(tmp_path_factory.mktemp("store"), mp)


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    s = open_store(env["TELEMETRY_STORE_URL"])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """In-memory instance: 5x faster per run than the SQLite test instance, and the
    storage itself is tested separately (PostgreSQL, a real webserver)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="session")
def defs() -> dg.Definitions:
    """The code location with the default ``[rollups]`` (partitions from 2026-01-01);
    the stores and configs of each test come from the environment at run time."""
    from telemetry_assets.definitions import build_defs

    return build_defs()
