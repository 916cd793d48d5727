"""The read-only HTTP query API (``telemetry api``): FastAPI on uvicorn, OpenAPI included."""
