"""Static metadata that tells an engineer what each asset is, from the definitions in use.

Every asset gets, in the UI's *Definition* tab:

* ``dagster/column_schema``: a ``dg.TableSchema`` built from the pandera (polars) schema
  the schema checks validate (``rollup_schema``) — types, nullability, column checks,
  the unique key and the frame-wide checks — so the documented schema is the enforced one
  and cannot drift. dagster-pandera would build it, but it labels ``pandera.polars``
  schemas as pandas types (STACK_FACTS trap 3), so it is built here. ``raw_points`` has no
  pandera schema: its columns come from ``RAW_SCHEMA``, the dtypes every store returns.
* ``dagster/table_name`` and ``store_url``: where the rows live for the configured store —
  the SQLite table (``rollup_15m``) and the file, or the InfluxDB database (bucket) and
  measurement; the URL with any credentials hidden.
* ``dagster/code_references``: the source that defines the asset — the asset function
  (``dg.with_source_code_references``), its ``ROLLUP_SPECS`` row and the pandera schema;
  for ``raw_points`` its spec, the store protocol and the daemon's writer. Local file
  references (the UI opens them in an editor); this project names no hosted repository,
  so they are not turned into git links (``dg.link_code_references_to_git`` would, given
  a URL and branch).
* an owner (``OWNERS``).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import dagster as dg
import pandera.polars as pa

from telemetry_assets.assets.raw import RAW_POINTS, build_raw_points
from telemetry_assets.rollup_schema import rollup_schema
from telemetry_core import rollup as rollup_module
from telemetry_core.rollup import SPECS_BY_ASSET, RollupSpec
from telemetry_core.store import DEFAULT_STORE_URL, redact_url
from telemetry_core.store.base import KEY_COLUMNS, RAW_SCHEMA, Store
from telemetry_core.store.urls import sqlite_path

OWNERS = ["team:telemetry"]
# What each column means (the schema itself — type, nullability, checks — comes from the
# pandera schema or RAW_SCHEMA; tests/assets/test_asset_metadata.py requires a text for
# every column there).
COLUMN_TEXT = {
    "time": "reading time, UTC nanoseconds since the epoch",
    "window_start": "start of the window, UTC nanoseconds (windows are [start, start + width))",
    "measurement": "measurement name from the subject (energy, occupancy, hvac...)",
    "site_id": 'site from the subject; "*" on portfolio rows',
    "device_id": 'device from the subject; "*" on site and portfolio rows',
    "field": "reading field (power_w, energy_kwh, occupied...)",
    "value": "the reading as float64 (booleans stored as 1.0 / 0.0)",
    "count": "readings in the window",
    "sum": "sum of the readings (the headline of delta fields)",
    "min": "smallest reading",
    "max": "largest reading",
    "first": "reading with the earliest time (ties: lowest site_id, device_id)",
    "last": "reading with the latest time (ties: highest site_id, device_id)",
    "first_time": "time of the first reading, UTC ns",
    "last_time": "time of the last reading, UTC ns",
    "is_work_hours": "window start inside the site's work hours (its time zone); null for "
    "the portfolio",
}


def _column_checks(col: pa.Column) -> list[str]:
    return [c.error or c.name for c in col.checks]


def column_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """The Dagster view of a pandera (polars) schema: one column per schema column, its
    dtype, nullability, uniqueness and checks; the unique key and frame checks as table
    constraints."""
    columns = [
        dg.TableColumn(
            name=name,
            type=str(col.dtype),
            description=col.description or COLUMN_TEXT.get(name),
            constraints=dg.TableColumnConstraints(
                nullable=bool(col.nullable), unique=bool(col.unique), other=_column_checks(col)
            ),
        )
        for name, col in schema.columns.items()
    ]
    other = [f"{c.name} (violation: {c.error})" for c in schema.checks]
    if schema.unique:
        other.insert(0, f"unique: ({', '.join(schema.unique)})")
    if schema.strict:
        other.append("strict: no other columns")
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=other))


def rollup_column_schema(spec: RollupSpec) -> dg.TableSchema:
    """The stored rows of a rollup level (delta-field checks depend on the config at run
    time; the column structure does not)."""
    return column_schema(rollup_schema(spec.width_ns, []))


def raw_column_schema() -> dg.TableSchema:
    columns = [
        dg.TableColumn(
            name=name,
            type=dtype,
            description=COLUMN_TEXT.get(name),
            constraints=dg.TableColumnConstraints(nullable=False),
        )
        for name, dtype in RAW_SCHEMA.items()
    ]
    identity = f"identity: ({', '.join([*KEY_COLUMNS, 'time'])}); a rewrite replaces the value"
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=[identity]))


def table_location(store_url: str | None, table: str) -> dict[str, str]:
    """``dagster/table_name`` and ``store_url`` for a table (SQLite) or measurement
    (InfluxDB) of the configured store. A relative SQLite path is resolved against the
    working directory of the process loading the code location, as the runs resolve it."""
    url = store_url or DEFAULT_STORE_URL
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = sqlite_path(url)
        shown = f"sqlite:///{Path(path).resolve()}"
        return {"dagster/table_name": table, "store_url": shown}
    database = unquote(parts.path.lstrip("/"))
    return {"dagster/table_name": f"{database}.{table}", "store_url": redact_url(url)}


def _source_ref(obj: Any, label: str) -> dg.LocalFileCodeReference:
    _, first = inspect.getsourcelines(obj)
    return dg.LocalFileCodeReference(
        file_path=str(Path(inspect.getsourcefile(obj) or "").resolve()),
        line_number=first,
        label=label,
    )


def _spec_row_ref(spec: RollupSpec) -> dg.LocalFileCodeReference:
    """The ``ROLLUP_SPECS`` row of the asset (found in the module's source when the code
    location loads, so the line stays right when the table moves)."""
    path = Path(inspect.getsourcefile(rollup_module) or "").resolve()
    needle = f'RollupSpec("{spec.asset}"'
    text = path.read_text().splitlines()
    line = next((i for i, row in enumerate(text, 1) if needle in row), None)
    return dg.LocalFileCodeReference(
        file_path=str(path), line_number=line, label=f"ROLLUP_SPECS row of {spec.asset}"
    )


def _daemon_writer_ref() -> list[dg.LocalFileCodeReference]:
    """The daemon's writer, located without importing the daemon into Dagster."""
    found = find_spec("ingest_daemon")
    if found is None or found.origin is None:
        return []
    path = Path(found.origin).parent / "writer.py"
    return [dg.LocalFileCodeReference(file_path=str(path), label="ingest daemon: store writer")]


def _references(refs: Sequence[dg.LocalFileCodeReference]) -> dg.CodeReferencesMetadataValue:
    return dg.CodeReferencesMetadataValue(code_references=list(refs))


def _rollup_spec_metadata(spec: dg.AssetSpec, store_url: str | None) -> dg.AssetSpec:
    rollup = SPECS_BY_ASSET[spec.key.to_user_string()]
    refs = [_spec_row_ref(rollup), _source_ref(rollup_schema, "pandera schema (rollup_schema)")]
    return spec.merge_attributes(
        metadata={
            "dagster/column_schema": dg.MetadataValue.table_schema(rollup_column_schema(rollup)),
            **table_location(store_url, f"rollup_{rollup.level}"),
            "dagster/code_references": _references(refs),
        },
        owners=OWNERS,
    )


def _raw_spec_metadata(spec: dg.AssetSpec, store_url: str | None) -> dg.AssetSpec:
    refs = [
        _source_ref(build_raw_points, "raw_points spec"),
        _source_ref(Store.write_points, "store protocol: write_points"),
        *_daemon_writer_ref(),
    ]
    return spec.merge_attributes(
        metadata={
            "dagster/column_schema": dg.MetadataValue.table_schema(raw_column_schema()),
            **table_location(store_url, "raw"),
            "dagster/code_references": _references(refs),
        },
        owners=OWNERS,
    )


def describe_assets(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec], store_url: str | None
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The assets with their static metadata and owner added, and code references to the
    function that defines each (``raw_points``, an external spec, has none to point at
    beyond those above)."""

    def add(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key == RAW_POINTS:
            return _raw_spec_metadata(spec, store_url)
        return _rollup_spec_metadata(spec, store_url)

    with warnings.catch_warnings():  # code references are beta in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        described: list[Any] = list(dg.map_asset_specs(add, list(assets)))
        referenced = dg.with_source_code_references(described)
        return cast(list[dg.AssetsDefinition | dg.AssetSpec], list(referenced))
