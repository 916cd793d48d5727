"""The threshold state machine of one alert key: what one reading, or a batch's readings of
one series, does to the key's state (ok -> pending -> firing -> ok). Pure functions of the
rule, the state and the readings: no database, so the rules of firing and resolving are
read and tested here, and ``engine.ThresholdEngine`` only plans and writes their results."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from telemetry_core.alerts.lifecycle import OK, KeyState
from telemetry_core.alerts.rules import Threshold


@dataclass(frozen=True)
class Action:
    kind: str  # "fire" | "resolve" | "state"
    time: int
    value: float
    started_at: int | None = None


class Readings(NamedTuple):
    """One series' readings in a batch, sorted by (time, seq), with their range."""

    items: list[tuple[int, int, float]]  # (time, seq, value)
    lo: float
    hi: float
    last: int


def quiet(rule: Threshold, state: KeyState, readings: Readings) -> bool:
    """True when no reading can change the key's state (decided from the value range, so
    the steady state costs no per-reading work): an ok key with nothing out of bounds, a
    firing key with everything out of bounds on one side, a pending key likewise whose
    breach has not held long enough by the last reading."""
    above, below = rule.above, rule.below
    if state.status == "ok":
        return (above is None or readings.hi <= above) and (below is None or readings.lo >= below)
    all_breach = (above is not None and readings.lo > above) or (
        below is not None and readings.hi < below
    )
    if state.status == "firing" or not all_breach:
        return all_breach
    start = state.breach_start
    return start is not None and readings.last - start < rule.for_ns


def step(rule: Threshold, state: KeyState, t: int, value: float) -> tuple[KeyState, Action | None]:
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
        return replace(OK, last_time=t, last_notified_at=state.last_notified_at), Action(
            "resolve", t, value
        )
    if not breach:
        if state.status == "pending":
            return replace(OK, last_time=t, last_notified_at=state.last_notified_at), Action(
                "state", t, value
            )
        return state, None
    start = state.breach_start if state.status == "pending" else t
    assert start is not None
    if t - start >= rule.for_ns:
        new = replace(state, status="firing", breach_start=start, last_time=t)
        return new, Action("fire", t, value, start)
    if state.status == "pending":
        return state, None
    return replace(state, status="pending", breach_start=t, last_time=t), Action("state", t, value)
