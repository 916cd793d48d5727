"""The daemon side of the threshold fast path: ``[[thresholds]]`` checked on every commit.

The hook runs on the store-writer thread after the store committed a batch and before any
of its messages is acknowledged (``writer.AfterCommit``), so a breach is persisted as an
alert event with its outbox entries before JetStream forgets the reading, within the
batch delay (100 ms by default) of the reading reaching NATS. Three outcomes:

* the engine persisted what the batch changed: the batch is acknowledged;
* ``AlertsUnavailable`` (the alerts database is locked or unreachable): an outage, like
  the store's. The writer retries the write and the hook together (both idempotent) and
  acknowledges nothing meanwhile;
* anything else is a bug in the engine, raised as ``EngineFault`` (naming the engine and
  the original exception). The writer treats whatever its hook raises, other than an
  outage, as a fault (never as the store refusing readings that *were* stored): logged
  with its traceback, ``/health`` error, exit status 1, nothing of the batch
  acknowledged (JetStream redelivers it to the restarted daemon).

At start, the webhook secrets are validated too (the daemon sends nothing, but a secret
that would fail every delivery is a configuration error to report now, with one line
naming the variable, not in the first alert_job run).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

from telemetry_core.alerts import ThresholdEngine, alerts_db_url, open_alerts_db, resolve_secrets
from telemetry_core.alerts.db import DEFAULT_ALERTS_URL, AlertsDB, AlertsUnavailable
from telemetry_core.config import Config
from telemetry_core.store import Point

log = logging.getLogger(__name__)


class EngineFault(RuntimeError):
    """A bug in the threshold engine: the daemon's fault path (see the module docstring)."""


class ThresholdHook:
    """``after_commit`` for the store writer: apply the threshold rules to a committed batch."""

    def __init__(self, engine: ThresholdEngine, db: AlertsDB) -> None:
        self.engine = engine
        self.db = db

    def __call__(self, points: Sequence[Point], seqs: Sequence[int]) -> None:
        try:
            result = self.engine.apply(points, seqs, time.time_ns())
        except AlertsUnavailable:
            raise  # an outage: the writer retries the batch, nothing is acknowledged
        except Exception as exc:
            raise EngineFault(f"threshold engine: {type(exc).__name__}: {exc}") from exc
        if result.fired or result.resolved:
            log.info("threshold alerts: %d fired, %d resolved", result.fired, result.resolved)

    def close(self) -> None:
        self.db.close()


def threshold_hook(
    config: Config, store_url: str | None, environ: Mapping[str, str] | None = None
) -> ThresholdHook | None:
    """At start: validate the webhook secrets (``ConfigError`` naming the variable); with
    ``[[thresholds]]``, open the alerts database (``alerts_db_url``: the same database the
    Dagster jobs use) and return the hook, otherwise None."""
    env = os.environ if environ is None else environ
    resolve_secrets(config, env)
    if not config.thresholds:
        return None
    location = alerts_db_url(store_url, env)
    db = open_alerts_db(location, lazy=True)  # a server still starting: an outage, not a crash
    log.info("%d threshold rules checked on every commit; alerts in %r", len(config.thresholds), db)
    if location == DEFAULT_ALERTS_URL:
        log.warning(
            "the alerts database is a local file: with Dagster on another machine set "
            "TELEMETRY_ALERTS_DB to a postgresql:// URL"
        )
    return ThresholdHook(ThresholdEngine(config, db), db)
