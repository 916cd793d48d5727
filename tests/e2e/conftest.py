from tests.daemon.conftest import daemons  # noqa: F401 (the real-daemon fixture)
