"""``telemetry demo`` while it runs: the live count of stored readings (from the daemon's
metrics), event lines, the Dagster progress, and a process that stopped by itself."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable


class Console:
    """Event lines (with the seconds since start) and a live status line, from several
    threads: the receiver prints alerts while the main loop updates the count."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.tty = sys.stdout.isatty()
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(("\r" if self.tty else "") + text.ljust(78 if self.tty else 0), flush=True)

    def event(self, text: str) -> None:
        self.line(f"[{time.monotonic() - self.started:4.0f}s] {text}")

    def status(self, text: str) -> None:
        with self._lock:
            print(text.ljust(78), end="\r" if self.tty else "\n", flush=True)


class ChildExited(RuntimeError):
    """A process of the demo stopped by itself."""


def watch(
    console: Console,
    http_port: int,
    procs: list[tuple[str, subprocess.Popen]],
    args,
    history: tuple[int, int] | None,
    stopping: Callable[[], bool],
) -> None:
    """Until ``stopping()`` or ``--duration``: the status line every second (every 10 s in a
    log), one Dagster step, and ``ChildExited`` when a process other than the simulator
    stopped."""
    from telemetry_cli.demo.dagster_progress import DagsterProgress

    started = time.monotonic()
    dagster = (
        None if args.no_dagster else DagsterProgress(console.event, args.dagster_port, history)
    )
    last: tuple[float, float] | None = None
    shown = 0.0
    while True:
        now = time.monotonic()
        with contextlib.suppress(OSError):
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2)
                .read()
                .decode()
            )
            stored = metric(text, "telemetry_ingest_readings_stored_total")
            dead = metric(text, 'telemetry_ingest_messages_total{outcome="dead_lettered"}')
            lag = metric(text, "telemetry_ingest_consumer_lag")
            rate = "-" if last is None else f"{(stored - last[1]) / max(now - last[0], 1e-9):,.0f}"
            last = (now, stored)
            # every second on a terminal; in a log, every 10 s is plenty
            if console.tty or now - shown >= 10 or stopping():
                shown = now
                console.status(
                    f"stored {stored:,.0f} readings ({rate}/s)  dead-lettered {dead:,.0f}  "
                    f"lag {lag:,.0f}"
                )
        if stopping() or (args.duration is not None and now - started >= args.duration):
            return
        for name, proc in procs:
            if proc.poll() is not None and name != "simulator":
                raise ChildExited(f"{name} exited unexpectedly with {proc.returncode}")
        if dagster is not None:
            dagster.step()
        time.sleep(1)


def metric(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) in ``text``."""
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
        total += float(m.group(1))
    return total
