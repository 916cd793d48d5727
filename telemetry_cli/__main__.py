import sys

from telemetry_cli.main import main

sys.exit(main())
