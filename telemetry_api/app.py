"""The read-only HTTP API: series, rankings, alerts and health, answered from the store.

Every answer comes from :mod:`telemetry_core.series`, the code ``telemetry query`` uses too.
A bad parameter is a 400 ``{"error": ..., "parameter": ...}`` naming it; nothing a client
sends can produce a 5xx. A store (or alerts database) that cannot be read is a 503 with
``Retry-After`` and ``{"error": ..., "parameter": null}``: the server's state, not the
client's input, and worth asking again. The schema publishes every parameter's accepted
form (times as ``telemetry_core.timeutil.TIME_PATTERN``); the rules that tie parameters
together, which OpenAPI cannot express, are stated in their descriptions.

The store is opened once per process (the SQLite store serialises access behind a lock and
is safe to share between the server's worker threads).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from telemetry_api.schema import (
    DESCRIPTION,
    ERRORS,
    FIELD,
    NAME,
    RETRY_AFTER,
    RETRY_AFTER_S,
    TIME_PARAMETERS,
    AlertOut,
    HealthResponse,
    SeriesResponse,
    SilenceOut,
    TopResponse,
    time_query,
)
from telemetry_core.config import Config, load_config
from telemetry_core.series import (
    MAX_LIMIT,
    QueryError,
    build_query,
    parse_time,
    series,
    top,
)
from telemetry_core.store import Store, StoreUnavailable, open_store
from telemetry_core.timeutil import TimestampError, parse_time_arg


class _Lazy:
    """The store and config, opened on first use (so a bad URL is reported per request,
    and importing the app opens nothing)."""

    def __init__(
        self, store_url: str | None, config_path: str | None, alerts_db: str | None
    ) -> None:
        self._store_url, self._config_path = store_url, config_path
        self._alerts_path = alerts_db
        self._alerts: Any = None
        self._store: Store | None = None
        self._config: Config | None = None
        self._lock = threading.Lock()

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self._store_url)
            return self._store

    def config(self) -> Config:
        with self._lock:
            if self._config is None:
                self._config = load_config(self._config_path)
            return self._config

    def alerts_db(self) -> Any:
        from telemetry_core.alerts.db import alerts_db_url, open_alerts_db

        with self._lock:
            if self._alerts is None:
                self._alerts = open_alerts_db(self._alerts_path or alerts_db_url(self._store_url))
            return self._alerts

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._alerts is not None:
            self._alerts.close()


def _error(status: int, message: str, parameter: str | None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "parameter": None},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _validation_message(parameter: str | None, error: dict[str, Any]) -> str:
    """Pydantic's message, except for a time that misses its pattern: the parser says which
    forms are accepted, in words (the pattern itself is long)."""
    if parameter in TIME_PARAMETERS and error.get("type") == "string_pattern_mismatch":
        try:
            parse_time_arg(str(error.get("input")))
        except TimestampError as exc:
            return f"{parameter}: {exc}"
    message = error.get("msg", "invalid request")
    return f"{parameter}: {message}" if parameter else message


def create_app(
    store_url: str | None = None,
    config_path: str | None = None,
    *,
    alerts_db: str | None = None,
) -> FastAPI:
    """The application. The alerts database is where ``telemetry alerts`` reads it
    (``alerts_db``, a path or URL, else ``alerts_db_url``: ``TELEMETRY_ALERTS_DB``, the
    store's SQLite file or PostgreSQL database, ``.state/alerts.db``)."""
    deps = _Lazy(store_url, config_path, alerts_db)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        deps.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Telemetry query API",
        version="1",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.deps = deps

    @app.exception_handler(QueryError)
    async def _query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return _error(400, str(exc), exc.parameter)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        parameter = loc[0] if loc else None
        return _error(400, _validation_message(parameter, first), parameter)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return _unavailable(f"the store is unavailable: {exc}")

    @app.exception_handler(sqlite3.DatabaseError)
    async def _store_unreadable(_request: Request, exc: sqlite3.DatabaseError) -> JSONResponse:
        # The SQLite store turns lock and I/O errors into StoreUnavailable; a file that is
        # not (or no longer) a database raises DatabaseError itself. Either way the store
        # cannot answer: the server's state, not the request's.
        return _unavailable(f"the store is unavailable: sqlite: {exc}")

    @app.get(
        "/v1/series",
        summary="One series: raw points or rollups",
        response_class=JSONResponse,
        responses={200: {"model": SeriesResponse}, **ERRORS},
    )
    def get_series(
        measurement: Annotated[str, Query(pattern=NAME, examples=["energy"])],
        field: Annotated[str, Query(pattern=FIELD, examples=["power_w", "energy_kwh"])],
        start: Annotated[str, time_query("-1h", "Must be before `end`.")] = "-1h",
        end: Annotated[str, time_query("now", "Must be after `start`.")] = "now",
        site: Annotated[
            str | None,
            Query(
                pattern=NAME,
                examples=["site-a"],
                description="only this site; not at scope `portfolio`",
            ),
        ] = None,
        device: Annotated[
            str | None,
            Query(
                pattern=NAME,
                examples=["meter-7"],
                description="only this device; at scope `device` only (refused at `site` and"
                " `portfolio`, whose rows are not per device)",
            ),
        ] = None,
        scope: Annotated[
            Literal["device", "site", "portfolio"],
            Query(
                description="rows per device, per site, or one for the portfolio; `device`"
                " goes with scope `device` only, `site` not with `portfolio`"
            ),
        ] = "device",
        resolution: Annotated[
            Literal["auto", "raw", "15m", "1h"],
            Query(description="`raw` at scope `device` only (raw points have no site rows)"),
        ] = "auto",
        work_hours: Annotated[
            Literal["true", "false"] | None,
            Query(
                description="only windows inside (true) or outside (false) the site's work"
                " hours; not at scope `portfolio` (work hours are per site)"
            ),
        ] = None,
    ) -> JSONResponse:
        """`auto` picks raw points for spans up to 1 hour (device scope), 15-minute rollups
        up to 7 days, hourly beyond, and says which in `resolution`. Rollup points carry every
        partial plus `value`, the headline: sum for delta fields, mean for gauge and state."""
        q = build_query(
            measurement=measurement,
            field=field,
            start=start,
            end=end,
            site=site,
            device=device,
            scope=scope,
            resolution=resolution,
            work_hours=None if work_hours is None else work_hours == "true",
        )
        used, points = series(deps.store(), deps.config(), q, with_value=True)
        return JSONResponse({"resolution": used, "scope": q.scope, "points": points})

    @app.get(
        "/v1/top",
        summary="Sites or devices ranked by a field's total",
        response_class=JSONResponse,
        responses={200: {"model": TopResponse}, **ERRORS},
    )
    def get_top(
        measurement: Annotated[str, Query(pattern=NAME, examples=["energy"])],
        field: Annotated[str, Query(pattern=FIELD, examples=["energy_kwh", "power_w"])],
        start: Annotated[str, time_query("-1h", "Must be before `end`.")] = "-1h",
        end: Annotated[str, time_query("now", "Must be after `start`.")] = "now",
        by: Literal["site", "device"] = "site",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
        site: Annotated[str | None, Query(pattern=NAME, description="only this site")] = None,
    ) -> JSONResponse:
        """Largest headline total first: the sum of a delta field (energy used), the mean
        of a gauge or state field over the range."""
        q = build_query(measurement=measurement, field=field, start=start, end=end, site=site)
        points = top(
            deps.store(),
            deps.config(),
            measurement=q.measurement,
            field=q.field,
            start_ns=q.start_ns,
            end_ns=q.end_ns,
            by=by,
            limit=limit,
            site=q.site,
        )
        return JSONResponse({"by": by, "points": points})

    @app.get(
        "/v1/alerts",
        summary="Alerts and their delivery attempts",
        response_class=JSONResponse,
        responses={200: {"model": list[AlertOut]}, **ERRORS},
    )
    def get_alerts(
        state: Literal["firing", "resolved", "all"] = "all",
        since: Annotated[
            str | None,
            time_query(None, "Alerts that fired or resolved at or after this time."),
        ] = None,
    ) -> JSONResponse:
        """As `telemetry alerts --format json`: newest first, each with one delivery entry
        per attempt (`delivered` | `failed`), a trailing `pending` entry while a delivery is
        due, or one `suppressed` entry with its `reason` (cooldown, a silence, a
        maintenance window or the inhibiting alert)."""
        from telemetry_core.alerts import list_alerts

        since_ns = None if since is None else parse_time(since, "since")
        return JSONResponse(list_alerts(deps.alerts_db(), state=state, since_ns=since_ns))

    @app.get(
        "/v1/silences",
        summary="Silences (active, pending and expired)",
        response_class=JSONResponse,
        responses={200: {"model": list[SilenceOut]}, **ERRORS},
    )
    def get_silences() -> JSONResponse:
        """As `telemetry silence list --state all --format json`: every silence, the latest
        start first, with its state now."""
        from telemetry_core.alerts.mutes import SILENCE_STATES, list_silences

        return JSONResponse(list_silences(deps.alerts_db(), SILENCE_STATES))

    @app.get(
        "/health",
        summary="Is the store reachable?",
        response_class=JSONResponse,
        responses={
            200: {"model": HealthResponse},
            503: {"model": HealthResponse, "headers": RETRY_AFTER},
        },
    )
    def health() -> JSONResponse:
        try:
            deps.store().ping()
        except Exception as exc:  # any failure to reach the store is the answer here
            return JSONResponse(
                {"status": "error", "store": {"up": False, "error": str(exc)[:300]}},
                503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return JSONResponse({"status": "ok", "store": {"up": True, "error": None}})

    return app
