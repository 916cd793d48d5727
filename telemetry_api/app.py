"""The read-only HTTP API: series, rankings, alerts and health, answered from the store.

Every answer comes from :mod:`telemetry_core.series`, the code ``telemetry query`` uses too.
A bad parameter is a 400 ``{"error": ..., "parameter": ...}`` naming it; nothing a client
sends can produce a 5xx (a store that is down is a 503, which is the server's state, not the
client's input).

The store is opened once per process (the SQLite store serialises access behind a lock and
is safe to share between the server's worker threads).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from telemetry_core.config import Config, load_config
from telemetry_core.series import (
    MAX_LIMIT,
    QueryError,
    build_query,
    series,
    top,
)
from telemetry_core.store import Store, StoreUnavailable, open_store

DESCRIPTION = """Read-only access to building telemetry: raw points and validated 15-minute,
hourly, site and portfolio rollups. Times are RFC 3339 (`2026-11-20T07:00:00Z`) or relative to
now (`-8h`, `-7d`); windows are half-open `[start, end)` and labelled by their start."""


class _Lazy:
    """The store and config, opened on first use (so a bad URL is reported per request,
    and importing the app opens nothing)."""

    def __init__(self, store_url: str | None, config_path: str | None) -> None:
        self._store_url, self._config_path = store_url, config_path
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

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _bool(value: str | None, parameter: str) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise QueryError(parameter, f"{parameter} must be true or false, not {value!r}")


def _error(status: int, message: str, parameter: str | None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)


def create_app(
    store_url: str | None = None,
    config_path: str | None = None,
    *,
    alerts: Callable[[], list[dict[str, Any]]] | None = None,
) -> FastAPI:
    """The application. ``alerts`` lists alerts as ``telemetry alerts --format json`` does."""
    deps = _Lazy(store_url, config_path)

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
        message = first.get("msg", "invalid request")
        return _error(400, f"{parameter}: {message}" if parameter else message, parameter)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, f"the store is unavailable: {exc}", None)

    @app.get("/v1/series", summary="One series: raw points or rollups")
    def get_series(
        measurement: Annotated[str | None, Query(description="e.g. energy")] = None,
        field: Annotated[str | None, Query(description="e.g. power_w")] = None,
        start: Annotated[str, Query(description="RFC 3339 or relative (-8h)")] = "-1h",
        end: Annotated[str, Query(description="RFC 3339, relative, or now")] = "now",
        site: str | None = None,
        device: Annotated[str | None, Query(description="device scope only")] = None,
        scope: Annotated[str, Query(description="device | site | portfolio")] = "device",
        resolution: Annotated[str, Query(description="auto | raw | 15m | 1h")] = "auto",
        work_hours: Annotated[
            str | None, Query(description="true | false: only windows inside/outside work hours")
        ] = None,
    ) -> dict[str, Any]:
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
            work_hours=_bool(work_hours, "work_hours"),
        )
        used, points = series(deps.store(), deps.config(), q, with_value=True)
        return {"resolution": used, "scope": q.scope, "points": points}

    @app.get("/v1/top", summary="Sites or devices ranked by a field's total")
    def get_top(
        measurement: str | None = None,
        field: str | None = None,
        start: str = "-1h",
        end: str = "now",
        by: Annotated[str, Query(description="site | device")] = "site",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
        site: Annotated[str | None, Query(description="only this site's devices")] = None,
    ) -> dict[str, Any]:
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
        return {"by": by, "points": points}

    if alerts is not None:
        list_alerts = alerts

        @app.get("/v1/alerts", summary="Alerts and their delivery attempts")
        def get_alerts() -> list[dict[str, Any]]:
            """As `telemetry alerts --format json`."""
            return list_alerts()

    @app.get("/health", summary="Is the store reachable?")
    def health() -> JSONResponse:
        try:
            deps.store().ping()
        except Exception as exc:  # any failure to reach the store is the answer here
            return JSONResponse(
                {"status": "error", "store": {"up": False, "error": str(exc)[:300]}}, 503
            )
        return JSONResponse({"status": "ok", "store": {"up": True, "error": None}})

    return app
