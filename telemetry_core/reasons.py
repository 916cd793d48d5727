"""Why a message or a reading is refused: the reason codes (Prometheus label values and
DLQ header values), and the exception that carries one out of the decoding."""

from __future__ import annotations

UNDECODABLE = "undecodable"
BAD_PAYLOAD = "bad_payload"
TOO_LARGE = "too_large"
BAD_SUBJECT = "bad_subject"
BAD_IDENTIFIER = "bad_identifier"
SUBJECT_MISMATCH = "subject_mismatch"
MISSING_TIMESTAMP = "missing_timestamp"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD = "too_old"
NON_FINITE = "non_finite"
NON_NUMERIC = "non_numeric"
NO_FIELDS = "no_fields"
MAX_DELIVERIES = "max_deliveries"
STORE_REJECTED = "store_rejected"  # the store refused valid-looking readings (not an outage)
UNKNOWN_DICTIONARY = "unknown_dictionary"  # header Telemetry-Dictionary names no [dictionaries.*]
UNKNOWN_KEY = "unknown_key"  # an integer key or name its dictionary does not hold
REASONS = (
    UNDECODABLE, BAD_PAYLOAD, TOO_LARGE, BAD_SUBJECT, BAD_IDENTIFIER, SUBJECT_MISMATCH,
    MISSING_TIMESTAMP, BAD_TIMESTAMP, FUTURE_TIMESTAMP, TOO_OLD, NON_FINITE, NON_NUMERIC,
    NO_FIELDS, MAX_DELIVERIES, STORE_REJECTED, UNKNOWN_DICTIONARY, UNKNOWN_KEY,
)  # fmt: skip


class Reject(Exception):
    """A message or reading refused, with its reason code and the error a user can act on."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error
