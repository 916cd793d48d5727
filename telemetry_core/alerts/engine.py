"""The threshold fast path: the daemon checks ``[[thresholds]]`` on every stored batch.

Called after the store committed a batch and before it is acknowledged, so a breach is
persisted (state, event, outbox entries, in one transaction) before JetStream forgets the
reading: nothing acknowledged is unevaluated. A crash in between means redelivery, and a
replay is harmless because a reading not newer than its key's last transition is ignored.

Why it is cheap: rules are indexed by (measurement, field), so a point no rule names costs
one dict lookup; per-key state is cached in the process, and the cache is known to be
exact while the database's alert epoch (bumped by every state change, by any process) is
the one the cache was built at. A batch with matching points costs one tiny read of that
epoch; only a batch that changes some key's state writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from telemetry_core.alerts import lifecycle
from telemetry_core.alerts.db import AlertsDB, bump_epoch, epoch
from telemetry_core.alerts.lifecycle import OK, AlertKey, KeyState
from telemetry_core.alerts.rules import Threshold

if TYPE_CHECKING:
    from telemetry_core.config import Config

# (measurement, site_id, device_id, field, time_ns, value)
Point = tuple[str, str, str, str, int, float]


@dataclass(frozen=True)
class ApplyResult:
    matched: int = 0  # points some rule looked at
    transitions: int = 0  # state changes written (pending starts/clears included)
    fired: int = 0
    resolved: int = 0


NOTHING = ApplyResult()


@dataclass(frozen=True)
class _Action:
    kind: str  # "fire" | "resolve" | "state"
    time: int
    value: float
    started_at: int | None = None


def step(rule: Threshold, state: KeyState, t: int, value: float) -> tuple[KeyState, _Action | None]:
    """One reading of one key: the next state, and the transition it causes (if any).

    A breach fires once it has held ``for_seconds`` (reading time minus the time of the
    first breaching reading; 0 fires on the first); an in-bounds reading clears a pending
    breach and resolves a firing alert."""
    if state.last_time is not None and t <= state.last_time:
        return state, None  # replayed or older than the last transition: already decided
    breach = rule.breached(value)
    if state.status == "firing":
        if breach:
            return state, None
        return replace(OK, last_time=t, last_notified_at=state.last_notified_at), _Action(
            "resolve", t, value
        )
    if not breach:
        if state.status == "pending":
            return replace(OK, last_time=t, last_notified_at=state.last_notified_at), _Action(
                "state", t, value
            )
        return state, None
    start = state.breach_start if state.status == "pending" else t
    assert start is not None
    if t - start >= rule.for_ns:
        new = replace(state, status="firing", breach_start=start, last_time=t)
        return new, _Action("fire", t, value, start)
    if state.status == "pending":
        return state, None
    return replace(state, status="pending", breach_start=t, last_time=t), _Action("state", t, value)


class ThresholdEngine:
    """Evaluates threshold rules on stored batches; one per process (or per writer thread)."""

    def __init__(self, config: Config, db: AlertsDB) -> None:
        self.config = config
        self.settings = config.alerts
        self.db = db
        self.rules = {r.name: r for r in config.thresholds}
        self._index: dict[tuple[str, str], list[Threshold]] = {}
        for rule in config.thresholds:
            self._index.setdefault((rule.measurement, rule.field), []).append(rule)
        self._cache: dict[AlertKey, KeyState] = {}
        self._epoch: int | None = None  # epoch the cache is exact at; None = not loaded

    def match(
        self, points: Sequence[Point], seqs: Sequence[int] | None = None
    ) -> dict[AlertKey, list[tuple[int, int, float]]]:
        """Readings per alert key, as (time, seq, value) sorted; no database access.

        Points are grouped by series first, so the scope of each rule is checked once per
        series, not once per point."""
        index = self._index
        out: dict[AlertKey, list[tuple[int, int, float]]] = {}
        if not index:
            return out
        series: dict[tuple[str, str, str, str], list[tuple[int, int, float]]] = {}
        for i, (m, s, d, f, t, v) in enumerate(points):
            if (m, f) in index:
                readings = series.get((m, s, d, f))
                if readings is None:
                    readings = series[(m, s, d, f)] = []
                readings.append((t, seqs[i] if seqs is not None else i, v))
        for (m, s, d, f), readings in series.items():
            readings.sort()  # reading time, then stream order
            for rule in index[(m, f)]:
                if (rule.site_id is None or rule.site_id == s) and (
                    rule.device_id is None or rule.device_id == d
                ):
                    out[AlertKey(rule.name, m, s, d, f)] = readings
        return out

    def apply(
        self, points: Sequence[Point], seqs: Sequence[int] | None, now_ns: int
    ) -> ApplyResult:
        """Evaluate a committed batch; persist every transition in one transaction."""
        matched = self.match(points, seqs)
        if not matched:
            return NOTHING
        with self.db.read() as conn:
            self._refresh(conn)
        plan = self._plan(matched)
        if not plan:
            return ApplyResult(matched=sum(map(len, matched.values())))
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
        return replace(result, matched=sum(map(len, matched.values())))

    def _refresh(self, conn: sqlite3.Connection) -> None:
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

    def _plan(self, matched) -> dict[AlertKey, list[_Action]]:
        """Transitions per key, computed from the cache (exact at ``self._epoch``)."""
        plan: dict[AlertKey, list[_Action]] = {}
        cache = self._cache
        rules = self.rules
        for key, readings in matched.items():
            rule = rules[key.rule]
            state = cache.get(key, OK)
            actions = None
            for t, _, v in readings:
                state, action = step(rule, state, t, v)
                if action is not None:
                    (actions := actions if actions is not None else []).append(action)
            if actions:
                plan[key] = actions
        return plan

    def _write(self, conn, plan, new_epoch: int, now_ns: int) -> ApplyResult:
        fired = resolved = transitions = 0
        for key, actions in plan.items():
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
