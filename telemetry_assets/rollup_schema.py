"""The pandera (polars) contract of every stored rollup level, and how failures are shown.

Validation is lazy, so every failing row is reported (in the check's metadata, as a
markdown table the UI renders), not just the first.
"""

from __future__ import annotations

import dagster as dg
import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from telemetry_core.config import Config
from telemetry_core.store.base import KEY_COLUMNS

KEYS = ["window_start", *KEY_COLUMNS]
SHOW_ROWS = 20  # failing rows shown in metadata
REL_TOL = 1e-9


def rollup_schema(width_ns: int, delta_fields: list[str]) -> pa.DataFrameSchema:
    """The contract of every stored rollup level."""

    def aligned(data) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("window_start") % width_ns == 0).alias("ok"))

    def mean_within(data) -> pl.LazyFrame:
        mean = pl.col("sum") / pl.col("count")
        slack = REL_TOL * (pl.col("min").abs() + pl.col("max").abs() + 1.0)
        ok = (pl.col("min") - slack <= mean) & (mean <= pl.col("max") + slack)
        return data.lazyframe.select(ok.fill_null(False).alias("ok"))

    def delta_non_negative(data) -> pl.LazyFrame:
        key = pl.concat_str(["measurement", pl.lit("."), "field"])
        ok = ~key.is_in(delta_fields) | (pl.col("min") >= 0)
        return data.lazyframe.select(ok.alias("ok"))

    return pa.DataFrameSchema(
        {
            "window_start": pa.Column(pl.Int64, nullable=False),
            "measurement": pa.Column(pl.String, nullable=False),
            "site_id": pa.Column(pl.String, nullable=False),
            "device_id": pa.Column(pl.String, nullable=False),
            "field": pa.Column(pl.String, nullable=False),
            "count": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
            "sum": pa.Column(pl.Float64, nullable=False),
            "min": pa.Column(pl.Float64, nullable=False),
            "max": pa.Column(pl.Float64, nullable=False),
            "first": pa.Column(pl.Float64, nullable=False),
            "last": pa.Column(pl.Float64, nullable=False),
            "first_time": pa.Column(pl.Int64, nullable=False),
            "last_time": pa.Column(pl.Int64, nullable=False),
            "is_work_hours": pa.Column(pl.Boolean, nullable=True),
        },
        unique=KEYS,
        strict=True,
        checks=[
            pa.Check(aligned, name="window_aligned", error="window_start not on a boundary"),
            pa.Check(mean_within, name="min_le_mean_le_max", error="mean outside [min, max]"),
            pa.Check(delta_non_negative, name="delta_non_negative", error="delta value < 0"),
        ],
    )


def md_table(frame: pl.DataFrame) -> dg.MetadataValue:
    head = frame.head(SHOW_ROWS)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in head.iter_rows()]
    return dg.MetadataValue.md("\n".join(lines))


def validate_rows(rows: pl.DataFrame, width_ns: int, config: Config) -> dg.AssetCheckResult:
    deltas = [key for key, kind in config.fields.items() if kind == "delta"]
    try:
        rollup_schema(width_ns, deltas).validate(rows, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        bad = sorted({i for i in cases["index"].to_list() if i is not None})
        failing = rows.with_row_index("index").filter(pl.col("index").is_in(bad))
        return dg.AssetCheckResult(
            passed=False,
            metadata={
                "rows_checked": rows.height,
                "failing_rows": len(bad),
                "failure_cases": md_table(cases.select("check", "column", "failure_case", "index")),
                "failing_row_values": md_table(failing),
            },
        )
    return dg.AssetCheckResult(passed=True, metadata={"rows_checked": rows.height})
