"""Retention: delete old data only where nothing is lost, proven right before deleting.

Two rules (``[retention]``):

* **Raw points** older than ``raw_days`` go, one 15-minute window at a time, and only
  windows where *every* rollup of the window — the three 15-minute levels of the window
  and the three hourly levels of its hour — was materialised and passes its checks now.
  A window that fails goes nowhere and is reported with its reason; the next run tries
  it again.
* **15-minute rollups** (device, site and portfolio) older than ``rollup_15m_days`` go,
  one hour at a time, and only hours whose three hourly levels were materialised and
  pass their checks (the hour keeps what its quarters said) and whose raw points are
  gone (while raw points stay, their 15-minute rows stay with them: they are what the raw
  is checked against). Hourly rollups are never deleted.

"Passed its checks" is established here, not read from Dagster's records: the caller
hands in ``verify``, which runs the very check functions of the rollup assets on the
stored rows of a range. Dagster's recorded check results cannot decide it: a backfill
run over a range records one result with no partition (so most windows have none), and
a result recorded earlier says nothing about rows rewritten since. Verifying the stored
rows right before deleting answers the question that matters — does what stays equal
what goes — including the raw reconciliation, which recomputes each window's rollups from
the very raw points about to be deleted. "Materialised" comes from Dagster
(``materialised``: the partitions it recorded), so data no Dagster run ever rolled up —
written by hand, or before ``[rollups] start`` — is never deleted; and a window the
ingest daemon marked late (a point arrived after its rollup) is kept until the late-data
sensor re-ran it.

Checks run per day of windows, and only where a day fails are hours, then windows,
checked one by one (so a healthy store costs one check pass per day of data).
Deletes are per window, each recounted right before it goes (a window written since its
verification is kept: "changed"). The ingest daemon refuses points older than
``raw_days``, so in practice no window past the cut-off is written again.

This module imports neither Dagster nor NATS: the Dagster job (telemetry_assets/jobs/
retention.py) supplies ``verify`` and ``materialised``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from telemetry_core.config import Config
from telemetry_core.rollup import ROLLUP_SPECS, RollupSpec
from telemetry_core.store.base import Store
from telemetry_core.timeutil import format_rfc3339
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS, window_start

# (grain "15m" | "1h", start, end) -> names of the checks that fail on that range
Verify = Callable[[str, int, int], list[str]]
# asset name -> window starts of the partitions Dagster recorded as materialised
Materialised = Callable[[str], set[int]]
Log = Callable[[str], None]

RAW = "raw"
ROLLUP_15M = "rollup_15m"
# Why a window (raw) or an hour (15-minute rollups) was kept.
REASONS = {
    "late_mark": "the ingest daemon marked it late; the late-data sensor has not re-run it",
    "not_materialised": "a rollup of it was never materialised by Dagster",
    "check_failed": "a check of its rollups fails on the stored rows",
    "raw_kept": "its raw points are still stored (kept by the raw rule)",
    "changed": "written again between its verification and its delete",
}
LATE_MARKS_READ = 1_000_000
SPECS_15M = tuple(s for s in ROLLUP_SPECS if s.grain == "15m")
SPECS_1H = tuple(s for s in ROLLUP_SPECS if s.grain == "1h")


@dataclass(frozen=True)
class Kept:
    what: str  # RAW (a 15-minute window of raw points) or ROLLUP_15M (an hour of them)
    start: int  # window or hour start, ns
    reason: str  # a key of REASONS
    detail: str = ""  # the missing assets, the failing checks


@dataclass
class RetentionReport:
    dry_run: bool
    raw_cutoff_ns: int
    rollup_15m_cutoff_ns: int
    raw_windows_eligible: int = 0
    raw_points_eligible: int = 0
    raw_windows_deleted: int = 0
    raw_points_deleted: int = 0
    rollup_15m_hours_eligible: int = 0
    rollup_15m_hours_deleted: int = 0
    rollup_rows_eligible: Counter[str] = field(default_factory=Counter)  # level -> rows
    rollup_rows_deleted: Counter[str] = field(default_factory=Counter)
    kept: list[Kept] = field(default_factory=list)

    def kept_counts(self, what: str) -> Counter[str]:
        return Counter(k.reason for k in self.kept if k.what == what)


def cutoffs(config: Config, now_ns: int) -> tuple[int, int]:
    """(raw, 15-minute rollup) cut-offs: what starts before them may go.

    Raw: the start of the window holding ``now - raw_days``, so every window before it
    ended at least ``raw_days`` ago. 15-minute rollups: ``max(rollup_15m_days,
    raw_days)`` on an hour boundary (whole hours go, and never before their raw points)."""
    r = config.retention
    raw = window_start(now_ns - r.raw_days * DAY_NS)
    rollup = window_start(now_ns - max(r.rollup_15m_days, r.raw_days) * DAY_NS, HOUR_NS)
    return raw, rollup


def apply_retention(
    store: Store,
    config: Config,
    now_ns: int,
    *,
    verify: Verify,
    materialised: Materialised,
    dry_run: bool,
    log: Log | None = None,
) -> RetentionReport:
    """Apply both rules (or, with ``dry_run``, only report what they would delete)."""
    raw_cut, rollup_cut = cutoffs(config, now_ns)
    report = RetentionReport(dry_run, raw_cut, rollup_cut)
    done = {s.asset: materialised(s.asset) for s in ROLLUP_SPECS}
    raw_gone = _raw_rule(store, report, verify, done, dry_run, log or _quiet)
    _rollup_rule(store, report, verify, done, raw_gone, dry_run, log or _quiet)
    return report


def _quiet(_: str) -> None:
    return None


def _days(oldest: int | None, cutoff: int) -> Iterable[tuple[int, int]]:
    if oldest is None:
        return
    for day in range(window_start(oldest, DAY_NS), cutoff, DAY_NS):
        yield day, min(day + DAY_NS, cutoff)


def _missing(specs: Iterable[RollupSpec], done: dict[str, set[int]], ws: int) -> list[str]:
    """Assets of ``specs`` with no materialisation of the partition holding ``ws``."""
    return [s.asset for s in specs if window_start(ws, s.width_ns) not in done[s.asset]]


def _runs(starts: list[int], width: int) -> list[tuple[int, int]]:
    """Consecutive starts merged into ``[start, end)`` ranges."""
    out: list[list[int]] = []
    for ws in sorted(starts):
        if out and out[-1][1] == ws:
            out[-1][1] = ws + width
        else:
            out.append([ws, ws + width])
    return [(a, b) for a, b in out]


def _failing_windows(windows: list[int], verify: Verify) -> dict[int, list[str]]:
    """Failing checks per raw window: each run of windows is checked whole (its
    15-minute levels on the run, its hourly levels on the hours around it); only a
    failing run is narrowed down to hours, and a failing hour to its windows."""
    out: dict[int, list[str]] = {}
    for a, b in _runs(windows, WINDOW_15M_NS):
        h0, h1 = window_start(a, HOUR_NS), window_start(b - 1, HOUR_NS) + HOUR_NS
        if not verify("15m", a, b) and not verify("1h", h0, h1):
            continue
        for h in range(h0, h1, HOUR_NS):
            lo, hi = max(a, h), min(b, h + HOUR_NS)
            hour_bad = verify("1h", h, h + HOUR_NS)
            quarters_bad = bool(verify("15m", lo, hi))
            for ws in range(lo, hi, WINDOW_15M_NS):
                bad = hour_bad + (verify("15m", ws, ws + WINDOW_15M_NS) if quarters_bad else [])
                if bad:
                    out[ws] = bad
    return out


def _failing_hours(hours: list[int], verify: Verify) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for a, b in _runs(hours, HOUR_NS):
        if not verify("1h", a, b):
            continue
        for h in range(a, b, HOUR_NS):
            bad = verify("1h", h, h + HOUR_NS)
            if bad:
                out[h] = bad
    return out


def _raw_rule(
    store: Store,
    report: RetentionReport,
    verify: Verify,
    done: dict[str, set[int]],
    dry_run: bool,
    log: Log,
) -> set[int]:
    """Delete (or count) raw windows; returns the windows gone (or that would go)."""
    cutoff = report.raw_cutoff_ns
    marked = {m.window_start for m in store.late_windows(LATE_MARKS_READ)}
    gone: set[int] = set()
    for day, end in _days(store.retention_oldest(None, cutoff), cutoff):
        counts = store.retention_counts(None, day, end)
        if not counts:
            continue
        candidates = []
        for ws in sorted(counts):
            missing = _missing(ROLLUP_SPECS, done, ws)
            if ws in marked:
                report.kept.append(Kept(RAW, ws, "late_mark"))
            elif missing:
                report.kept.append(Kept(RAW, ws, "not_materialised", ", ".join(missing)))
            else:
                candidates.append(ws)
        failing = _failing_windows(candidates, verify)
        for ws, checks in sorted(failing.items()):
            report.kept.append(Kept(RAW, ws, "check_failed", ", ".join(checks)))
        eligible = {ws: counts[ws] for ws in candidates if ws not in failing}
        report.raw_windows_eligible += len(eligible)
        report.raw_points_eligible += sum(eligible.values())
        if dry_run:
            gone |= set(eligible)
        elif eligible:
            deleted = store.retention_delete(None, eligible)
            gone |= set(deleted)
            report.raw_windows_deleted += len(deleted)
            report.raw_points_deleted += sum(deleted.values())
            for ws in sorted(set(eligible) - set(deleted)):
                report.kept.append(Kept(RAW, ws, "changed"))
        log(
            f"raw {_day(day)}: {len(counts)} windows with points, {len(eligible)} "
            f"{'would go' if dry_run else 'deleted'}, {len(counts) - len(eligible)} kept"
        )
    return gone


def _rollup_rule(
    store: Store,
    report: RetentionReport,
    verify: Verify,
    done: dict[str, set[int]],
    raw_gone: set[int],
    dry_run: bool,
    log: Log,
) -> None:
    cutoff = report.rollup_15m_cutoff_ns
    levels = [s.level for s in SPECS_15M]
    oldest = [store.retention_oldest(level, cutoff) for level in levels]
    first = min((t for t in oldest if t is not None), default=None)
    for day, end in _days(first, cutoff):
        counts = {level: store.retention_counts(level, day, end) for level in levels}
        hours = sorted({window_start(ws, HOUR_NS) for c in counts.values() for ws in c})
        if not hours:
            continue
        raw_hours = {
            window_start(ws, HOUR_NS)
            for ws in store.retention_counts(None, day, end)
            if ws not in raw_gone
        }
        candidates = []
        for h in hours:
            missing = _missing(SPECS_1H, done, h)
            if h in raw_hours:
                report.kept.append(Kept(ROLLUP_15M, h, "raw_kept"))
            elif missing:
                report.kept.append(Kept(ROLLUP_15M, h, "not_materialised", ", ".join(missing)))
            else:
                candidates.append(h)
        failing = _failing_hours(candidates, verify)
        for h, checks in sorted(failing.items()):
            report.kept.append(Kept(ROLLUP_15M, h, "check_failed", ", ".join(checks)))
        eligible = {h for h in candidates if h not in failing}
        report.rollup_15m_hours_eligible += len(eligible)
        changed: set[int] = set()
        for level in levels:
            expected = {
                ws: n for ws, n in counts[level].items() if window_start(ws, HOUR_NS) in eligible
            }
            report.rollup_rows_eligible[level] += sum(expected.values())
            if dry_run or not expected:
                continue
            deleted = store.retention_delete(level, expected)
            report.rollup_rows_deleted[level] += sum(deleted.values())
            changed |= {window_start(ws, HOUR_NS) for ws in set(expected) - set(deleted)}
        if not dry_run:
            report.rollup_15m_hours_deleted += len(eligible - changed)
            for h in sorted(changed):
                report.kept.append(Kept(ROLLUP_15M, h, "changed"))
        log(
            f"15-minute rollups {_day(day)}: {len(hours)} hours with rows, {len(eligible)} "
            f"{'would go' if dry_run else 'deleted'}, {len(hours) - len(eligible)} kept"
        )


def _day(ns: int) -> str:
    return format_rfc3339(ns)[:10]
