"""Helpers shared by the Dagster tests (a plain module next to them, not a conftest)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dagster as dg

from telemetry_core.timeutil import parse_rfc3339

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _shared_conftest():
    """tests/conftest.py (need_service, free_port), loaded by path: both conftests are
    called ``conftest``, so a plain import would be ambiguous."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("telemetry_shared_conftest", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_shared = _shared_conftest()
need_service = _shared.need_service
free_port = _shared.free_port


def ns(text: str) -> int:
    return parse_rfc3339(text)


def run_job(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    *,
    key: str | None = None,
    start: str | None = None,
    end: str | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a rollup job for one partition key or an inclusive key range."""
    all_tags = dict(tags or {})
    if start is not None:
        all_tags.update({RANGE_START_TAG: start, RANGE_END_TAG: end or start})
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, tags=all_tags
    )
    assert result.success
    return result


def run_all(defs, instance, *, q_start, q_end, h_start, h_end, tags=None) -> None:
    """Every rollup level over a range: quarters first, then hours (as a backfill does)."""
    run_job(defs, "rollup_15m_job", instance, start=q_start, end=q_end, tags=tags)
    run_job(defs, "rollup_1h_job", instance, start=h_start, end=h_end, tags=tags)
