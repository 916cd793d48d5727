"""telemetry_core.alerts stays inside the core boundary; the daemon's part stays light."""

import subprocess
import sys


def _loaded_after(import_line: str) -> set[str]:
    code = f"import sys; {import_line}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_alerts_import_neither_dagster_nor_nats():
    loaded = _loaded_after("import telemetry_core.alerts as a; [getattr(a, n) for n in a.__all__]")
    assert "dagster" not in loaded and "nats" not in loaded


def test_the_daemons_part_loads_no_polars():
    loaded = _loaded_after(
        "from telemetry_core.alerts import ThresholdEngine, open_alerts_db, resolve_secrets; "
        "import telemetry_core.config"
    )
    assert "polars" not in loaded and "dagster" not in loaded
