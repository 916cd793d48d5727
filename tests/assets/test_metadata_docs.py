"""docs/dagster.md's metadata table and the real materialisations agree, both ways: every
documented key is emitted on the assets the table names, and nothing undocumented is."""

from __future__ import annotations

import re
from pathlib import Path

from telemetry_assets.names import SITE_TAG
from telemetry_core.rollup import ROLLUP_SPECS
from tests.assets.rollup_helpers import fleet_points, ns, run_job

DOC = Path(__file__).resolve().parents[2] / "docs" / "dagster.md"
TOTAL = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+\.(sum|mean)$")
ALL = {s.asset for s in ROLLUP_SPECS}
ON = {  # the "on" column's phrases -> assets
    "every rollup asset": ALL,
    "device scope": {s.asset for s in ROLLUP_SPECS if s.scope == "device"},
    "device and site scope": {s.asset for s in ROLLUP_SPECS if s.scope != "portfolio"},
}


def documented() -> dict[str, set[str]]:
    """key -> assets it is documented on, from the table under "Materialisation metadata"."""
    section = DOC.read_text().split("### Materialisation metadata", 1)[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    table = []
    for line in section[start:]:  # the first table after the heading, to its last row
        if not line.startswith("|"):
            break
        table.append(line)
    out: dict[str, set[str]] = {}
    for line in table:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        key, on = cells[0].strip("`"), cells[1]
        phrase = max((p for p in ON if on.startswith(p)), key=len)
        out[key] = ON[phrase]
    return out


def emitted_key(key: str) -> str:
    match = TOTAL.match(key)
    return f"<measurement>.<field>.{match.group(1)}" if match else key


def test_documented_metadata_keys_match_real_materialisations(defs, instance, store):
    store.write_points(fleet_points(ns("2026-11-20T06:00:00Z"), 1))
    results = [
        run_job(defs, "rollup_15m_job", instance, start="2026-11-20-06:00", end="2026-11-20-06:45"),
        run_job(defs, "rollup_1h_job", instance, key="2026-11-20-06:00"),
        run_job(
            defs, "rollup_15m_job", instance, key="2026-11-20-06:15", tags={SITE_TAG: "site-a"}
        ),
        run_job(defs, "rollup_1h_job", instance, key="2026-11-20-06:00", tags={SITE_TAG: "site-a"}),
    ]
    seen: dict[str, set[str]] = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            assert mat.partition is not None  # per-partition metadata, not one per run
            for key in mat.metadata:
                seen.setdefault(emitted_key(key), set()).add(mat.asset_key.to_user_string())
    docs = documented()
    assert "windows" not in docs
    assert sorted(seen) == sorted(docs), "docs/dagster.md and the emitted keys differ"
    for key, assets in docs.items():
        assert seen[key] == assets, key
