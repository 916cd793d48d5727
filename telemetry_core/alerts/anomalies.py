"""``[[anomalies]]`` rules over the stored 15-minute device rollups, one window at a time.

* ``zscore``: robust z of the window's mean (sum / count) against the means of the same
  15-minute slot on each of the trailing ``baseline_days`` days: ``z = 0.6745 (x - median)
  / MAD``. Fewer than ``min_history`` baseline values: no verdict (counted and reported).
  A flat baseline (MAD = 0) falls back to the mean absolute deviation around the median
  (``z = (x - median) / (1.2533 * MeanAD)``, Iglewicz & Hoaglin); if that is 0 too, every
  baseline value is equal and any difference is anomalous (z = ±inf), equality normal.
  Equality allows a relative 1e-9 so float noise in sum / count is not an anomaly.
* ``silent``: a device that reported this measurement/field in the trailing day before
  the span (or inside it) has no row in the last ``windows`` windows ending with the
  evaluated one. A span window that is not rolled up yet gives no verdict (a missing
  rollup is not silence).
  ``scope = "site"``: a site none of whose devices reported in those windows, one verdict
  per site with no device (``device_id`` ``""``; ``null`` in alerts and webhooks).
* ``stuck``: min == max in each of the last ``windows`` windows, all with the same value.
  A device missing from one of those windows gives no verdict.

polars is imported by the store reads only, so importing this module stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import fmean, median
from typing import TYPE_CHECKING

from telemetry_core.alerts.rules import AlertSettings, AnomalyRule
from telemetry_core.timeutil import format_rfc3339
from telemetry_core.windows import DAY_NS, HOUR_NS, WINDOW_15M_NS

if TYPE_CHECKING:
    from telemetry_core.config import Config
    from telemetry_core.store import Store

W = WINDOW_15M_NS
# A window that ended this long before the evaluation is history (a backfill, very late
# data): its anomalies are recorded, but alert state is left alone and nobody is notified.
STALE_AFTER_NS = 2 * HOUR_NS
Series = tuple[str, str, str, str]  # measurement, site_id, device_id, field


@dataclass(frozen=True)
class Verdict:
    rule: str
    kind: str
    severity: str
    series: Series
    window_start: int
    anomalous: bool | None  # None: no verdict
    value: float | None = None
    score: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class RuleCounts:
    rule: str
    kind: str
    series: int = 0  # series evaluated (verdict or not)
    anomalies: int = 0
    no_verdict: int = 0


@dataclass(frozen=True)
class Evaluation:
    window_start: int
    evaluated_at: int
    settings: AlertSettings
    rules: tuple[RuleCounts, ...] = ()
    verdicts: tuple[Verdict, ...] = field(default=(), repr=False)

    @property
    def stale(self) -> bool:
        """Recorded but not notified: the window ended over 2 h before the evaluation."""
        return self.window_start + W + STALE_AFTER_NS <= self.evaluated_at

    @property
    def anomalies(self) -> int:
        return sum(r.anomalies for r in self.rules)

    def metadata(self) -> dict[str, int | bool]:
        """Numbers for a Dagster run's metadata (per rule too)."""
        out: dict[str, int | bool] = {
            "rules_evaluated": len(self.rules),
            "series_evaluated": sum(r.series for r in self.rules),
            "anomalies": self.anomalies,
            "no_verdict": sum(r.no_verdict for r in self.rules),
            "stale_not_notified": self.stale,
        }
        for r in self.rules:
            out[f"anomalies.{r.rule}"] = r.anomalies
            out[f"no_verdict.{r.rule}"] = r.no_verdict
        return out


def _rows(store: Store, rule: AnomalyRule, start: int, end: int) -> list[dict]:
    frame = store.read_rollups(
        "15m", start, end, measurement=rule.measurement, field=rule.field,
        site_id=rule.site_id, device_id=rule.device_id,
    )  # fmt: skip
    return [r for r in frame.iter_rows(named=True) if r["count"]]


def _series(row: dict) -> Series:
    return (row["measurement"], row["site_id"], row["device_id"], row["field"])


def _same(a: float, b: float) -> bool:
    """Equal up to float noise (a mean is sum / count)."""
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _zero(spread: float, scale: float) -> bool:
    return spread <= 1e-9 * max(1.0, abs(scale))


def robust_z(x: float, baseline: list[float]) -> tuple[float, str]:
    """Robust z of ``x`` against ``baseline`` (see the module docstring for MAD = 0)."""
    med = median(baseline)
    deviations = [abs(b - med) for b in baseline]
    mad = median(deviations)
    if _same(x, med):
        return 0.0, f"equals the baseline median {med:.6g}"
    if not _zero(mad, med):
        return 0.6745 * (x - med) / mad, f"median {med:.6g}, MAD {mad:.6g}"
    mean_ad = fmean(deviations)
    if not _zero(mean_ad, med):
        return (x - med) / (1.253314 * mean_ad), f"median {med:.6g}, MAD 0, MeanAD {mean_ad:.6g}"
    return math.copysign(math.inf, x - med), f"flat baseline at {med:.6g}"


def _zscore(store: Store, rule: AnomalyRule, ws: int) -> list[Verdict]:
    current = _rows(store, rule, ws, ws + W)
    history: dict[Series, list[float]] = {}
    for day in range(1, rule.baseline_days + 1):
        slot = ws - day * DAY_NS
        for row in _rows(store, rule, slot, slot + W):
            history.setdefault(_series(row), []).append(row["sum"] / row["count"])
    out = []
    for row in current:
        key = _series(row)
        mean = row["sum"] / row["count"]
        baseline = history.get(key, [])
        verdict = Verdict(rule.name, rule.kind, rule.severity, key, ws, None, mean)
        if len(baseline) < rule.min_history:
            detail = f"too little history: {len(baseline)} of {rule.min_history} baseline days"
            out.append(_with(verdict, anomalous=None, detail=detail))
            continue
        z, detail = robust_z(mean, baseline)
        out.append(_with(verdict, anomalous=abs(z) > rule.z, score=z, detail=detail))
    return out


def _with(verdict: Verdict, **changes) -> Verdict:
    return replace(verdict, **changes)


def _span(rule: AnomalyRule, ws: int) -> list[int]:
    return [ws - i * W for i in range(rule.windows - 1, -1, -1)]


def _silent(store: Store, rule: AnomalyRule, ws: int) -> list[Verdict]:
    span = _span(rule, ws)
    recent = {_series(r) for r in _rows(store, rule, span[0], ws + W)}
    last_seen: dict[Series, int] = {}
    for row in _rows(store, rule, span[0] - DAY_NS, span[0]):
        key = _series(row)
        last_seen[key] = max(last_seen.get(key, 0), row["last_time"])
    marks = set(store.rolled_up_windows("15m", span[0], ws + W))
    out = []
    for key in sorted(recent | set(last_seen)):
        verdict = Verdict(rule.name, rule.kind, rule.severity, key, ws, key not in recent)
        if key in recent:
            out.append(_with(verdict, detail="reported"))
            continue
        missing = [w for w in span if (w, "*") not in marks and (w, key[1]) not in marks]
        if missing:
            detail = f"window {format_rfc3339(missing[0])} is not rolled up yet"
            out.append(_with(verdict, anomalous=None, detail=detail))
            continue
        detail = f"no reading in {rule.windows} window(s); last at {format_rfc3339(last_seen[key])}"
        out.append(_with(verdict, score=float(rule.windows), detail=detail))
    return out


def _silent_site(store: Store, rule: AnomalyRule, ws: int) -> list[Verdict]:
    """``scope = "site"``: a site none of whose devices reported in the span; its series
    has no device (``device_id`` ``""``), so a dark site is one alert, not one per device."""
    span = _span(rule, ws)
    recent = {r["site_id"] for r in _rows(store, rule, span[0], ws + W)}
    last_seen: dict[str, int] = {}
    for row in _rows(store, rule, span[0] - DAY_NS, span[0]):
        last_seen[row["site_id"]] = max(last_seen.get(row["site_id"], 0), row["last_time"])
    marks = set(store.rolled_up_windows("15m", span[0], ws + W))
    out = []
    for site in sorted(recent | set(last_seen)):
        key = (rule.measurement, site, "", rule.field)
        verdict = Verdict(rule.name, rule.kind, rule.severity, key, ws, site not in recent)
        if site in recent:
            out.append(_with(verdict, detail="reported"))
            continue
        missing = [w for w in span if (w, "*") not in marks and (w, site) not in marks]
        if missing:
            detail = f"window {format_rfc3339(missing[0])} is not rolled up yet"
            out.append(_with(verdict, anomalous=None, detail=detail))
            continue
        detail = (
            f"no device reported in {rule.windows} window(s); last at "
            f"{format_rfc3339(last_seen[site])}"
        )
        out.append(_with(verdict, score=float(rule.windows), detail=detail))
    return out


def _stuck(store: Store, rule: AnomalyRule, ws: int) -> list[Verdict]:
    span = _span(rule, ws)
    per_series: dict[Series, dict[int, dict]] = {}
    for row in _rows(store, rule, span[0], ws + W):
        per_series.setdefault(_series(row), {})[row["window_start"]] = row
    out = []
    for key, windows in sorted(per_series.items()):
        if ws not in windows:
            continue  # not reporting now: the silent rule's business
        value = windows[ws]["min"]
        verdict = Verdict(rule.name, rule.kind, rule.severity, key, ws, None, value)
        if len(windows) < len(span):
            detail = f"reported in {len(windows)} of the last {len(span)} windows"
            out.append(_with(verdict, detail=detail))
            continue
        stuck = all(_same(r["min"], r["max"]) and _same(r["min"], value) for r in windows.values())
        readings = sum(r["count"] for r in windows.values())
        detail = (
            f"{readings} readings all {value:.6g} over {len(span)} windows"
            if stuck
            else "values vary"
        )
        out.append(_with(verdict, anomalous=stuck, score=float(readings), detail=detail))
    return out


EVALUATORS = {"zscore": _zscore, "silent": _silent, "stuck": _stuck}


def evaluate_window(store: Store, config: Config, window_start: int, now_ns: int) -> Evaluation:
    """Every ``[[anomalies]]`` rule on the 15-minute window starting at ``window_start``."""
    if window_start % W:
        raise ValueError(f"window_start {window_start} is not on a 15-minute boundary")
    counts, verdicts = [], []
    for rule in config.anomalies:
        evaluator = _silent_site if rule.scope == "site" else EVALUATORS[rule.kind]
        found = evaluator(store, rule, window_start)
        verdicts += found
        counts.append(
            RuleCounts(
                rule.name,
                rule.kind,
                series=len(found),
                anomalies=sum(v.anomalous is True for v in found),
                no_verdict=sum(v.anomalous is None for v in found),
            )
        )
    return Evaluation(window_start, now_ns, config.alerts, tuple(counts), tuple(verdicts))
