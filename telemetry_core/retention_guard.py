"""Re-running an old window must not wipe what retention kept.

Retention deletes raw points after ``raw_days`` and 15-minute rollups after
``max(rollup_15m_days, raw_days)``, keeping the coarser rows computed from them (15-minute
rows outlive raw points, hourly rows live forever). A later run of such a window (a
backfill from ``[rollups] start``, a manual re-materialisation) recomputes it from a source
that is gone, and since a rollup run *replaces* its windows, it would replace the kept rows
with nothing. So a window whose source lies before its retention cut-off, whose
recomputation is empty and which still holds stored rows, is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemetry_core.retention import cutoffs
from telemetry_core.rollup import SPECS_BY_ASSET, RollupSpec

if TYPE_CHECKING:
    import polars as pl

    from telemetry_core.config import Config
    from telemetry_core.store.base import Store


def source_cutoff(spec: RollupSpec, config: Config, now_ns: int) -> int | None:
    """Before this time ``spec``'s source may have been deleted by retention (None: never)."""
    raw_cut, rollup_15m_cut = cutoffs(config, now_ns)
    if spec.parent is None:
        return raw_cut
    return rollup_15m_cut if SPECS_BY_ASSET[spec.parent].grain == "15m" else None


def kept_windows(
    spec: RollupSpec,
    store: Store,
    config: Config,
    start_ns: int,
    end_ns: int,
    rows: pl.DataFrame,
    *,
    site_id: str | None,
    now_ns: int,
) -> list[int]:
    """Windows of ``[start, end)`` to leave untouched: past the source's cut-off, nothing
    recomputed, rows stored. Recent ranges (the common case) cost no query."""
    cut = source_cutoff(spec, config, now_ns)
    if cut is None or start_ns >= cut:
        return []
    upto = min(end_ns, cut)
    stored = store.read_rollups(spec.level, start_ns, upto, site_id=site_id)
    if stored.height == 0:
        return []
    recomputed = set(rows["window_start"].to_list()) if rows.height else set()
    return sorted(set(stored["window_start"].to_list()) - recomputed)


def replace_ranges(
    start_ns: int, end_ns: int, kept: list[int], width_ns: int
) -> list[tuple[int, int]]:
    """``[start, end)`` minus the kept windows, as consecutive ranges to replace."""
    out: list[tuple[int, int]] = []
    a = start_ns
    for ws in sorted(kept):
        if a < ws:
            out.append((a, ws))
        a = ws + width_ns
    if a < end_ns:
        out.append((a, end_ns))
    return out
