"""``python -m ingest_daemon`` is ``telemetry ingest``."""

import sys

from telemetry_cli.main import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
