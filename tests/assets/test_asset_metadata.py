"""Every asset of build_defs() says what it is: its column schema (from the pandera schema
the checks enforce), where its rows live for the configured store, code references to
the source that defines it, and an owner."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from telemetry_assets.assets.metadata import OWNERS
from telemetry_assets.definitions import build_defs
from telemetry_assets.rollup_schema import rollup_schema
from telemetry_core.rollup import ROLLUP_SPECS, SPECS_BY_ASSET
from telemetry_core.store.base import RAW_SCHEMA


def _nodes(store_url: str | None) -> dict[str, dg.AssetSpec]:
    graph = build_defs(store_url=store_url).get_repository_def().asset_graph
    return {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}


@pytest.fixture(scope="module")
def sqlite_nodes(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("meta") / "telemetry.db"
    return path, _nodes(f"sqlite:///{path}")


def test_every_asset_has_an_owner_a_schema_a_location_and_code_references(sqlite_nodes):
    _, nodes = sqlite_nodes
    assert sorted(nodes) == sorted(["raw_points", *(s.asset for s in ROLLUP_SPECS)])
    for name, node in nodes.items():
        assert list(node.owners) == OWNERS, name
        for key in ("dagster/column_schema", "dagster/table_name", "store_url"):
            assert key in node.metadata, (name, key)
        assert node.metadata["dagster/code_references"].code_references, name


def test_rollup_column_schema_is_the_pandera_schema(sqlite_nodes):
    _, nodes = sqlite_nodes
    for spec in ROLLUP_SPECS:
        table = nodes[spec.asset].metadata["dagster/column_schema"].schema
        pandera = rollup_schema(spec.width_ns, [])
        got = [(c.name, c.type, c.constraints.nullable) for c in table.columns]
        want = [(n, str(c.dtype), bool(c.nullable)) for n, c in pandera.columns.items()]
        assert got == want, spec.asset
        assert all(c.description for c in table.columns), spec.asset
        count = next(c for c in table.columns if c.name == "count")
        assert count.constraints.other == ["greater_than_or_equal_to(1)"]
        other = table.constraints.other
        assert other[0] == f"unique: ({', '.join(pandera.unique)})"
        assert {c.name for c in pandera.checks} == {t.split(" ")[0] for t in other[1:-1]}


def test_raw_points_schema_is_what_every_store_returns(sqlite_nodes):
    _, nodes = sqlite_nodes
    table = nodes["raw_points"].metadata["dagster/column_schema"].schema
    assert [(c.name, c.type) for c in table.columns] == list(RAW_SCHEMA.items())
    assert all(c.description for c in table.columns)
    assert "identity: (measurement, site_id, device_id, field, time)" in table.constraints.other[0]


def test_location_on_sqlite_names_the_file_and_table(sqlite_nodes):
    path, nodes = sqlite_nodes
    assert nodes["raw_points"].metadata["dagster/table_name"] == "raw"
    for spec in ROLLUP_SPECS:
        md = nodes[spec.asset].metadata
        assert md["dagster/table_name"] == f"rollup_{spec.level}"
        assert md["store_url"] == f"sqlite:///{path.resolve()}"


def test_location_on_influxdb_names_database_and_measurement_without_secrets():
    nodes = _nodes("influxdb://ingest:s3cret@influx.example:8086/telemetry")
    assert nodes["raw_points"].metadata["dagster/table_name"] == "telemetry.raw"
    assert nodes["site_1h"].metadata["dagster/table_name"] == "telemetry.rollup_site_1h"
    for node in nodes.values():
        assert "s3cret" not in node.metadata["store_url"]
        assert node.metadata["store_url"].startswith("influxdb://ingest:***@influx.example")


def _lines(ref: dg.LocalFileCodeReference) -> list[str]:
    path = Path(ref.file_path)
    assert path.is_absolute() and path.is_file(), ref
    return path.read_text().splitlines()


def test_code_references_point_at_the_defining_source(sqlite_nodes):
    _, nodes = sqlite_nodes
    for spec in ROLLUP_SPECS:
        refs = nodes[spec.asset].metadata["dagster/code_references"].code_references
        by_file = {Path(r.file_path).name: r for r in refs}
        row = by_file["rollup.py"]
        assert f'RollupSpec("{spec.asset}"' in _lines(row)[row.line_number - 1]
        schema = by_file["rollup_schema.py"]
        assert "def rollup_schema(" in _lines(schema)[schema.line_number - 1]
        asset_fn = by_file["rollups.py"]  # the asset function (with_source_code_references)
        assert _lines(asset_fn)[asset_fn.line_number - 1].strip() == "@dg.asset("  # decorator
        assert SPECS_BY_ASSET[spec.asset].level in row.label or spec.asset in row.label
    raw = nodes["raw_points"].metadata["dagster/code_references"].code_references
    files = {
        Path(r.file_path).as_posix().split("/")[-2] + "/" + Path(r.file_path).name for r in raw
    }
    assert files == {"assets/raw.py", "store/base.py", "ingest_daemon/writer.py"}
