"""The daemon stays light: importing it must not load Dagster (nor polars)."""

import subprocess
import sys


def _loaded_after(import_line: str) -> set[str]:
    code = f"import sys; {import_line}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_ingest_daemon_loads_no_dagster():
    loaded = _loaded_after(
        "import ingest_daemon, ingest_daemon.__main__, ingest_daemon.daemon, ingest_daemon.cli"
    )
    assert "dagster" not in loaded
    assert "polars" not in loaded, "the daemon's hot path must not pull in polars"
    assert "telemetry_cli" not in loaded, "dependencies point one way: the CLI on top"


def test_core_imports_neither_dagster_nor_nats():
    loaded = _loaded_after(
        "import telemetry_core.decode, telemetry_core.config, telemetry_core.rollup, "
        "telemetry_core.store, telemetry_core.store.sqlite, telemetry_core.windows"
    )
    assert "dagster" not in loaded
    assert "nats" not in loaded
