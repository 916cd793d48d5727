"""``telemetry api``: the read-only HTTP query API (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse

HELP = """Serve the read-only HTTP query API until Ctrl-C. OpenAPI at /openapi.json, docs at /docs.

  GET /v1/series?measurement=&field=&start=&end=&site=&device=&scope=&resolution=&work_hours=
  GET /v1/top?measurement=&field=&start=&end=&by=site|device&limit=10
  GET /v1/alerts          alerts and their delivery attempts (as `telemetry alerts --format json`)
  GET /health

Times are RFC 3339, a date, 'now' or relative (-8h); start defaults to -1h, end to now.
resolution=auto picks raw points up to 1 hour (device scope), 15-minute rollups up to 7 days,
hourly beyond. A bad parameter is a 400 {"error": ..., "parameter": ...}; a store that cannot
answer is a 503 with Retry-After."""


def register(sub) -> None:
    p = sub.add_parser(
        "api",
        help="serve the read-only HTTP query API",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free port)")
    p.add_argument("--store-url", help="store URL (default $TELEMETRY_STORE_URL)")
    p.add_argument("--config", help="TOML config (default $TELEMETRY_CONFIG)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from telemetry_api.app import create_app
    from telemetry_cli.errors import CliError
    from telemetry_core.config import load_config
    from telemetry_core.store import open_store

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port} is not a TCP port")
    load_config(args.config)  # a broken config is a one-line error now, not per request
    open_store(args.store_url).close()  # likewise a bad store URL
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    sock.listen(2048)  # connections queue from here on, before the server loop runs
    host, port = sock.getsockname()[:2]
    print(
        f"telemetry api on http://{host}:{port}  (OpenAPI: /openapi.json, docs: /docs)", flush=True
    )
    app = create_app(args.store_url, args.config)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False))
    server.run(sockets=[sock])
    return 0
