"""``telemetry dlq``: list dead letters and replay them after a fix.

A dead letter on stream ``IOT_DLQ`` holds the original bytes untouched and the reasons in
headers (see ingest_daemon.dlq). Replay republishes those bytes, with the original
``Content-Type``, ``Content-Encoding`` and ``Telemetry-Dictionary``, to the original subject,
so the daemon validates them again like any new message: what is fixed now is stored, what
is still bad comes back as a new letter. A letter is deleted only after JetStream
acknowledged its republish, so a replay interrupted at any point loses nothing (at worst a
letter is replayed twice, which the identity upsert absorbs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

HELP = """List or replay dead letters (stream IOT_DLQ).

  telemetry dlq list   [--reason R] [--since T] [--limit N] [--format table|json]
  telemetry dlq replay [--reason R] [--since T] [--limit N] [--dry-run]

Letters are selected by reason (one of a letter's reasons, e.g. bad_timestamp) and by when they
were dead-lettered (--since: RFC 3339 or relative, e.g. -2h), oldest first. `list --format json`
prints one array of {"seq", "time", "subject", "reasons", "size", "preview"}.

`replay` republishes each selected letter's original bytes and headers to its original subject
with a fresh Nats-Msg-Id (so JetStream's duplicate window does not swallow it), deletes the
letter only after JetStream acknowledged the republish, and prints "replayed N, failed M"
(exit status 1 when M > 0). The daemon validates replayed messages again: fixed ones are
stored, the rest come back as new letters. NATS connection settings come from the same
TELEMETRY_NATS_* variables as the daemon."""

PREVIEW_CHARS = 120
KEEP_HEADERS = ("Content-Type", "Content-Encoding", "Telemetry-Dictionary")


@dataclass
class Letter:
    seq: int
    time_ns: int
    subject: str
    reasons: list[str]
    data: bytes
    headers: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        from telemetry_core.timeutil import format_rfc3339

        return {
            "seq": self.seq,
            "time": format_rfc3339(self.time_ns),
            "subject": self.subject,
            "reasons": self.reasons,
            "size": len(self.data),
            "preview": preview(self.data, self.headers),
        }


def preview(data: bytes, headers: dict[str, str]) -> str:
    """The start of the payload as text; binary bodies are described, not dumped."""
    encoding = headers.get("Content-Encoding")
    if encoding:
        return f"<{len(data)} bytes, {encoding}>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, binary: {data[:24].hex()}...>"
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def reasons_of(headers: dict[str, str]) -> list[str]:
    """Every distinct reason of a letter, first reason first."""
    out: list[str] = []
    first = headers.get("Telemetry-Reason")
    if first:
        out.append(first)
    try:
        rejected = json.loads(headers.get("Telemetry-Rejected") or "[]")
    except json.JSONDecodeError:
        rejected = []
    for item in rejected if isinstance(rejected, list) else []:
        reason = item.get("reason") if isinstance(item, dict) else None
        if isinstance(reason, str) and reason not in out:
            out.append(reason)
    return out


def register(sub) -> None:
    p = sub.add_parser(
        "dlq",
        help="list and replay dead letters",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, text in (
        ("list", "list dead letters"),
        ("replay", "republish dead letters to their original subjects"),
    ):
        a = actions.add_parser(name, help=text, description=HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        a.add_argument("--reason", help="only letters with this reason (e.g. bad_timestamp)")
        a.add_argument("--since", help="only letters dead-lettered at or after this time")
        a.add_argument("--limit", type=int, help="at most this many letters (oldest first)")
        a.add_argument(
            "--nats-url", help="NATS URL (default $TELEMETRY_NATS_URL or nats://127.0.0.1:4222)"
        )
        if name == "list":
            a.add_argument("--format", choices=("table", "json"), default="table")
        else:
            a.add_argument("--dry-run", action="store_true", help="show what would be replayed")
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemetry_cli.errors import CliError
    from telemetry_core.reasons import REASONS
    from telemetry_core.timeutil import parse_time_arg

    if args.reason is not None and args.reason not in REASONS:
        raise CliError(f"--reason {args.reason!r} is not a reason (one of {', '.join(REASONS)})")
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    since = parse_time_arg(args.since) if args.since else None
    return asyncio.run(_run(args, since))


async def _run(args: argparse.Namespace, since: int | None) -> int:
    from telemetry_cli.natsconn import connect

    nc = await connect(args.nats_url)
    try:
        js = nc.jetstream()
        letters = await read_letters(js, reason=args.reason, since_ns=since, limit=args.limit)
        if args.action == "list":
            emit(letters, args.format)
            return 0
        if args.dry_run:
            emit(letters, "table")
            print(f"would replay {len(letters)} (dry run: nothing sent, nothing deleted)")
            return 0
        replayed, failures = await replay(js, letters)
        for seq, error in failures:
            print(f"letter {seq}: {error}", file=sys.stderr)
        print(f"replayed {replayed}, failed {len(failures)}")
        return 1 if failures else 0
    finally:
        await nc.close()


async def read_letters(
    js, *, reason: str | None = None, since_ns: int | None = None, limit: int | None = None
) -> list[Letter]:
    """Selected letters in stream order, read with an ordered consumer (nothing is consumed)."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js import api
    from nats.js.errors import NotFoundError

    from ingest_daemon.jetstream import parse_ack_reply
    from telemetry_core.subjects import DLQ_STREAM
    from telemetry_core.timeutil import to_datetime

    try:
        info = await js.stream_info(DLQ_STREAM)
    except NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME if since_ns else api.DeliverPolicy.ALL,
        opt_start_time=to_datetime(since_ns) if since_ns else None,
    )
    sub = await js.subscribe(
        ">", stream=DLQ_STREAM, ordered_consumer=True, config=config, pending_msgs_limit=-1
    )
    letters: list[Letter] = []
    last = info.state.last_seq
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5)
            except NatsTimeout:
                break  # nothing left after the start time
            meta = msg.metadata
            headers = dict(msg.headers or {})
            letter = Letter(
                seq=meta.sequence.stream,
                time_ns=parse_ack_reply(msg.reply).timestamp_ns,
                subject=headers.get("Telemetry-Original-Subject") or msg.subject,
                reasons=reasons_of(headers),
                data=msg.data,
                headers=headers,
            )
            if reason is None or reason in letter.reasons:
                letters.append(letter)
            if (limit is not None and len(letters) >= limit) or meta.num_pending == 0:
                break
            if letter.seq >= last:
                break
    finally:
        await sub.unsubscribe()
    return letters


async def replay(js, letters: list[Letter]) -> tuple[int, list[tuple[int, str]]]:
    """Republish, then delete each letter once JetStream acknowledged the republish."""
    from telemetry_core.subjects import DLQ_STREAM

    replayed, failures = 0, []
    for letter in letters:
        if not letter.subject.startswith("iot."):
            failures.append((letter.seq, f"original subject {letter.subject!r} is not iot.*"))
            continue
        headers = {k: letter.headers[k] for k in KEEP_HEADERS if k in letter.headers}
        # Fresh relative to the original message; the same for a second replay of this very
        # letter, so replaying twice within the duplicate window stores it once.
        headers["Nats-Msg-Id"] = f"replay-{DLQ_STREAM}-{letter.seq}"
        try:
            await js.publish(letter.subject, letter.data, headers=headers, timeout=5)
        except Exception as exc:  # reported per letter; the letter is kept
            failures.append((letter.seq, f"republish failed, letter kept: {exc!r}"))
            continue
        try:
            await js.delete_msg(DLQ_STREAM, letter.seq)
        except Exception as exc:  # reported; a second replay is harmless
            failures.append((letter.seq, f"replayed but not deleted: {exc!r}"))
            continue
        replayed += 1
    return replayed, failures


def emit(letters: list[Letter], fmt: str) -> None:
    rows = [letter.as_json() for letter in letters]
    if fmt == "json":
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return
    columns = ("seq", "time", "subject", "reasons", "size", "preview")
    cells = [
        [str(r["seq"]), r["time"], r["subject"], ",".join(r["reasons"]), str(r["size"]),
         r["preview"]]
        for r in rows
    ]  # fmt: skip
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    widths[-1] = len(columns[-1])  # the preview is last and unpadded
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"({len(rows)} letters)", file=sys.stderr)
