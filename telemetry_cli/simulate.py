"""``telemetry simulate``: a fleet of simulated building devices publishing to NATS."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

HELP = """Publish realistic building telemetry (energy meters, occupancy areas, HVAC zones,
emergency lights) over N sites x M devices to subjects iot.<measurement>.<site>.<device>, at a
steady message rate, timestamps on the wall clock. Every message carries Nats-Msg-Id; the
--late/--duplicate/--invalid fractions mix in readings from 20-60 minutes ago, re-sent
messages (same id: dropped by the stream's duplicate window) and each kind of bad input.
--spike-every N makes one energy meter at a time draw 6-8 kW for 10 s, the first 15 s after
start and then every N seconds (what the demo's power-high threshold catches). Publishes are acknowledged by JetStream, so what was sent is known to be in the stream."""


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="publish a simulated device fleet to NATS",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--nats-url", help="NATS URL (default $TELEMETRY_NATS_URL or nats://127.0.0.1:4222)"
    )
    p.add_argument("--sites", type=int, default=3, help="number of sites (default 3)")
    p.add_argument("--devices", type=int, default=12, help="devices per site (default 12)")
    p.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    p.add_argument("--batch", type=int, default=1, help="readings per message (default 1)")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--late", type=float, default=0.0, help="fraction of late messages (0-1)")
    p.add_argument("--duplicate", type=float, default=0.0, help="fraction re-sent with the same id")
    p.add_argument("--invalid", type=float, default=0.0, help="fraction of invalid messages")
    p.add_argument(
        "--spike-every",
        type=float,
        metavar="SECONDS",
        help="every SECONDS one energy meter, in turn, draws 6-8 kW for 10 s (default: never)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError

    if args.sites < 1 or args.devices < 1 or args.batch < 1:
        raise CliError("--sites, --devices and --batch must be at least 1")
    if args.rate <= 0:
        raise CliError("--rate must be positive")
    for name in ("late", "duplicate", "invalid"):
        value = getattr(args, name)
        if not 0 <= value <= 1:
            raise CliError(f"--{name} must be a fraction between 0 and 1")
    if args.spike_every is not None and args.spike_every <= 10:
        raise CliError("--spike-every must be more than 10 seconds (a spike lasts 10 s)")
    if args.late + args.invalid > 1:
        raise CliError("--late plus --invalid cannot exceed 1")
    try:
        sent = asyncio.run(simulate(args))
    except OSError as exc:
        raise CliError(f"cannot reach NATS: {exc}") from None
    print(f"published {sent} messages", file=sys.stderr)
    return 0


async def simulate(args: argparse.Namespace) -> int:
    from ingest_daemon.jetstream import ensure_streams
    from telemetry_cli.errors import CliError
    from telemetry_cli.natsconn import connect
    from telemetry_core.fleet import Fleet, Spikes

    nc = await connect(args.nats_url)  # the daemon's TELEMETRY_NATS_* (a list, credentials)
    js = nc.jetstream()
    await ensure_streams(js)
    fleet = Fleet(args.sites, args.devices, seed=args.seed)
    interval = len(fleet.devices) / args.rate  # one round of every device
    start_ns = time.time_ns()
    spikes = Spikes(start_ns, args.spike_every) if args.spike_every else None
    stream = fleet.messages(
        start_ns,
        interval,
        batch=args.batch,
        late_fraction=args.late,
        duplicate_fraction=args.duplicate,
        invalid_fraction=args.invalid,
        spikes=spikes,
    )
    started = time.monotonic()
    sent = failed = 0
    last_report = started
    futures = []
    tty = sys.stderr.isatty()
    try:
        for msg in stream:
            if args.count is not None and sent >= args.count:
                break
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                break
            ahead = started + sent / args.rate - now
            if ahead > 0:
                await asyncio.sleep(ahead)
            futures.append(await js.publish_async(msg.subject, msg.payload, headers=msg.headers))
            sent += 1
            if len(futures) >= 1000:
                failed += await _settle(futures)
            if not args.quiet and now - last_report >= 1:
                last_report = now
                rate = sent / max(now - started, 1e-9)
                end = "\r" if tty else "\n"
                print(
                    f"sent {sent} messages ({rate:,.0f}/s), {failed} failed",
                    end=end,
                    file=sys.stderr,
                )
    finally:
        failed += await _settle(futures)
        await nc.drain()
    if failed:
        raise CliError(f"{failed} of {sent} publishes were not acknowledged by JetStream")
    return sent


async def _settle(futures: list) -> int:
    results = await asyncio.gather(*futures, return_exceptions=True)
    futures.clear()
    return sum(isinstance(r, BaseException) for r in results)
