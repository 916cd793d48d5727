"""The threshold fast path: the daemon checks ``[[thresholds]]`` on every stored batch.

Called after the store committed a batch and before it is acknowledged, so a breach is
persisted (state, event, outbox entries, in one transaction) before JetStream forgets the
reading: nothing acknowledged is unevaluated. A crash in between means redelivery, and a
replay is harmless because a reading not newer than its key's last transition is ignored.

Why it is cheap: rules are indexed by measurement and field, so a point no rule names costs
a dict lookup; matching points are grouped by series and each series' value range decides
most keys without a per-reading step (``quiet``); per-key state is cached in the process,
and the cache is exact while the database's alert epoch (bumped by every state change, by
any process) is the one it was built at. A batch with matching points costs one tiny read
of that epoch; only a batch that changes some key's state writes. bench/bench_alerts.py
measures it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from telemetry_core.alerts import lifecycle
from telemetry_core.alerts.db import AlertsDB, Connection, bump_epoch, epoch
from telemetry_core.alerts.lifecycle import OK, AlertKey, KeyState
from telemetry_core.alerts.matchers import matches
from telemetry_core.alerts.rules import Threshold
from telemetry_core.alerts.transitions import Action, Readings, quiet, step

if TYPE_CHECKING:
    from telemetry_core.config import Config

# (measurement, site_id, device_id, field, time_ns, value)
Point = tuple[str, str, str, str, int, float]


@dataclass(frozen=True)
class ApplyResult:
    matched: int = 0  # points that could change some key (outside the band, or a hot series)
    transitions: int = 0  # state changes written (pending starts/clears included)
    fired: int = 0
    resolved: int = 0


NOTHING = ApplyResult()


class ThresholdEngine:
    """Evaluates threshold rules on stored batches; one per process (or per writer thread)."""

    def __init__(self, config: Config, db: AlertsDB) -> None:
        self.config = config
        self.settings = config.alerts
        self.db = db
        self.rules = {r.name: r for r in config.thresholds}
        # (measurement, field, site_id or None, device_id or None) -> rules of that scope
        self._scoped: dict[tuple[str, str, str | None, str | None], list[Threshold]] = {}
        self._fields_of: dict[str, set[str]] = {}  # measurement -> fields some rule names
        for r in config.thresholds:
            scope = (r.measurement, r.field, r.site_id, r.device_id)
            self._scoped.setdefault(scope, []).append(r)
            self._fields_of.setdefault(r.measurement, set()).add(r.field)
        # measurement -> field -> (lo, hi): inside [lo, hi] a value is in bounds for every
        # rule of that field, whatever its scope (the highest `below`, the lowest `above`)
        self._band: dict[str, dict[str, tuple[float, float]]] = {}
        for r in config.thresholds:
            lo, hi = self._band.setdefault(r.measurement, {}).get(r.field, (-math.inf, math.inf))
            lo = lo if r.below is None else max(lo, r.below)
            hi = hi if r.above is None else min(hi, r.above)
            self._band[r.measurement][r.field] = (lo, hi)
        self._cache: dict[AlertKey, KeyState] = {}
        self._epoch: int | None = None  # epoch the cache is exact at; None = not loaded
        self._hot: set[tuple[str, str, str, str]] = set()  # series with a key not ok

    def match(
        self, points: Sequence[Point], seqs: Sequence[int] | None = None
    ) -> dict[AlertKey, Readings]:
        """Readings per alert key; no database access.

        Points are grouped by series first, so the scope of each rule is checked once per
        series, not once per point, and each series' value range once for all its rules."""
        out: dict[AlertKey, Readings] = {}
        fields_of = self._fields_of
        if not fields_of:
            return out
        scoped = self._scoped
        series: dict[tuple, list[tuple[int, int, float]]] = {}
        get = series.get
        for i, p in enumerate(points):
            fields = fields_of.get(p[0])
            if fields is None or p[3] not in fields:
                continue
            key = p[:4]
            readings = get(key)
            if readings is None:
                readings = series[key] = []
            readings.append((p[4], i if seqs is None else seqs[i], p[5]))
        for (m, s, d, f), readings in series.items():
            readings.sort()  # reading time, then stream order
            values = [r[2] for r in readings]
            summary = Readings(readings, min(values), max(values), readings[-1][0])
            for scope in ((m, f, None, None), (m, f, s, None), (m, f, None, d), (m, f, s, d)):
                for rule in scoped.get(scope, ()):
                    out[AlertKey(rule.name, m, s, d, f)] = summary
        return out

    def candidates(
        self, points: Sequence[Point], seqs: Sequence[int] | None
    ) -> tuple[list[Point], list[int]] | None:
        """The points that can change some key's state, with their sequences; None when no
        point is even named by a rule (then the database is not read at all).

        A value inside its field's band is in bounds for every rule, so a series matters
        only if one of its readings in the batch is outside the band, or one of its keys is
        pending or firing (``_hot``, exact after _refresh); the readings of every other
        series are dropped here, before any grouping or sorting."""
        band = self._band
        named = False
        for p in points:
            fields = band.get(p[0])
            if fields is not None and p[3] in fields:
                named = True
                break
        if not named:
            return None
        with self.db.read() as conn:
            self._refresh(conn)
        hot = set(self._hot)
        named_at: list[int] = []
        for i, p in enumerate(points):
            fields = band.get(p[0])
            if fields is None:
                continue
            bounds = fields.get(p[3])
            if bounds is None:
                continue
            named_at.append(i)
            if not bounds[0] <= p[5] <= bounds[1]:
                hot.add(p[:4])  # every reading of this series in the batch counts now
        keep: list[Point] = []
        keep_seqs: list[int] = []
        if not hot:
            return keep, keep_seqs  # the steady state: nothing out of bounds, nothing pending
        for i in named_at:
            p = points[i]
            if p[:4] in hot:
                keep.append(p)
                keep_seqs.append(i if seqs is None else seqs[i])
        return keep, keep_seqs

    def apply(
        self, points: Sequence[Point], seqs: Sequence[int] | None, now_ns: int
    ) -> ApplyResult:
        """Evaluate a committed batch; persist every transition in one transaction."""
        found = self.candidates(points, seqs)
        if found is None:
            return NOTHING
        matched = self.match(*found)
        if not matched:
            return NOTHING
        plan = self._plan(matched)
        if not plan:
            return ApplyResult(matched=sum(len(r.items) for r in matched.values()))
        try:
            with self.db.write() as conn:
                self._refresh(conn)  # another process may have committed since the read
                plan = self._plan(matched)
                new_epoch = bump_epoch(conn) if plan else self._epoch
                result = self._write(conn, plan, new_epoch or 0, now_ns)
        except BaseException:
            self._epoch = None  # the cache may hold states of a rolled-back commit
            self._cache.clear()
            raise
        self._epoch = new_epoch
        self._rehot()
        return replace(result, matched=sum(len(r.items) for r in matched.values()))

    def _refresh(self, conn: Connection) -> None:
        current = epoch(conn)
        if current == self._epoch:
            return
        if self._epoch is None:
            self._cache.clear()
            rows = conn.execute(
                f"SELECT {lifecycle.KEY_COLUMNS}, {lifecycle.STATE_COLUMNS} FROM alert_state"
            )
        else:
            rows = conn.execute(
                f"SELECT {lifecycle.KEY_COLUMNS}, {lifecycle.STATE_COLUMNS} FROM alert_state "
                "WHERE epoch > ?",
                (self._epoch,),
            )
        for row in rows:
            if row[0] in self.rules:
                self._cache[AlertKey(*row[:5])] = KeyState(*row[5:])
        self._epoch = current
        self._rehot()

    def _rehot(self) -> None:
        self._hot = {
            (k.measurement, k.site_id, k.device_id, k.field)
            for k, state in self._cache.items()
            if state.status != "ok"
        }

    def _plan(self, matched) -> dict[AlertKey, list[Action]]:
        """Transitions per key, computed from the cache (exact at ``self._epoch``)."""
        plan: dict[AlertKey, list[Action]] = {}
        cache = self._cache
        rules = self.rules
        for key, readings in matched.items():
            rule = rules[key.rule]
            state = cache.get(key, OK)
            if quiet(rule, state, readings):
                continue
            actions: list[Action] = []
            for t, _, v in readings.items:
                state, action = step(rule, state, t, v)
                if action is not None:
                    actions.append(action)
            if actions:
                plan[key] = actions
        return plan

    def _inhibits(self, key: AlertKey) -> bool:
        """Could the key's alert be the source of an ``[[alerts.inhibit]]`` rule?"""
        labels = {
            "rule": key.rule, "kind": "threshold", "severity": self.rules[key.rule].severity,
            "measurement": key.measurement, "site_id": key.site_id, "device_id": key.device_id,
            "field": key.field,
        }  # fmt: skip
        return any(matches(r.source, labels) for r in self.settings.inhibit)

    def _write(self, conn, plan, new_epoch: int, now_ns: int) -> ApplyResult:
        fired = resolved = transitions = 0
        items = list(plan.items())
        if self.settings.inhibit:  # sources first: what they inhibit in this batch sees them
            items.sort(key=lambda item: not self._inhibits(item[0]))
        for key, actions in items:
            rule = self.rules[key.rule]
            state = self._cache.get(key, OK)
            for action in actions:
                transitions += 1
                if action.kind == "fire":
                    fired += 1
                    state = lifecycle.fire(
                        conn, self.settings, key, state,
                        kind="threshold", severity=rule.severity, value=action.value,
                        started_at=action.time if action.started_at is None else action.started_at, at_time=action.time,
                        now_ns=now_ns,
                    )  # fmt: skip
                elif action.kind == "resolve":
                    resolved += 1
                    state = lifecycle.resolve(
                        conn, self.settings, state,
                        resolved_at=action.time, at_time=action.time, now_ns=now_ns,
                    )  # fmt: skip
                else:
                    state, _ = step(rule, state, action.time, action.value)
            lifecycle.save_state(conn, key, state, new_epoch)
            self._cache[key] = state
        return ApplyResult(0, transitions, fired, resolved)
