"""Loopback ports for the servers the demo starts: pick a free one, see whether one is
taken, wait until one answers."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port no one listens on now (the kernel's pick; it may be taken again before use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something holds ``host:port``: bound as servers bind (SO_REUSEADDR), so a
    port in TIME_WAIT counts as free and one held by a listener does not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> bool:
    """Wait until ``host:port`` accepts connections (False on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
