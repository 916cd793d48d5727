"""Subject grammar: ``iot.<measurement>.<site_id>.<device_id>``.

The site and device in the subject are the authority for where a reading is stored.
"""

from __future__ import annotations

from typing import NamedTuple

from telemetry_core.identifiers import check_name

STREAM = "IOT"
STREAM_SUBJECTS = ("iot.>",)
DLQ_STREAM = "IOT_DLQ"
DLQ_PREFIX = "dlq"
DLQ_SUBJECTS = (f"{DLQ_PREFIX}.>",)
DEFAULT_DURABLE = "telemetry-ingest"


class Subject(NamedTuple):
    measurement: str
    site_id: str
    device_id: str


def parse_subject(subject: str) -> Subject:
    """Raise ``IdentifierError``/``ValueError`` with a user-facing reason when malformed."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] != "iot":
        raise ValueError(f"subject {subject[:200]!r} is not iot.<measurement>.<site>.<device>")
    return Subject(
        check_name(parts[1], "measurement"),
        check_name(parts[2], "site"),
        check_name(parts[3], "device"),
    )


def subject_for(measurement: str, site_id: str, device_id: str) -> str:
    return f"iot.{measurement}.{site_id}.{device_id}"


def dlq_subject(original: str) -> str:
    return f"{DLQ_PREFIX}.{original}"
