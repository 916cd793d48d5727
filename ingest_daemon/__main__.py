"""``python -m ingest_daemon`` is ``telemetry ingest`` (without the rest of the CLI)."""

import sys

from ingest_daemon.cli import main

if __name__ == "__main__":
    sys.exit(main())
