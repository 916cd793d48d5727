"""The ``influxdb2://`` writer: InfluxDB 2.x through influxdb-client.

Why synchronous writes with our own retry loop: the client's default batching write API
logs and *drops* a batch that finally fails (influxdb-client-python issues #198, #80,
#332), which would break the daemon's rule "ack only after the store commits". Here a
write either succeeds, is retried a bounded number of times (connection errors, 5xx,
429), or raises -- StoreUnavailable for "later", otherwise what
:func:`~telemetry_core.store.influx.http.classify` says (a refused write is
``StoreRefused``, 401/403 an authorisation error).

Why the delete API for replacing a window: the v1 API of 2.x has no DELETE. The delete
API's time range includes *both* ends, so ``[start, end)`` is sent as
``start .. end - 1ns`` (the window starting at ``end`` must survive).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from telemetry_core.identifiers import check_name
from telemetry_core.store.base import StoreUnavailable
from telemetry_core.store.influx.http import V1Http, classify

_T = TypeVar("_T")

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# InfluxDB's own time limits (ns since the epoch).
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806


def rfc3339_ns(t_ns: int) -> str:
    """RFC 3339 UTC with all nine fractional digits (the delete API takes strings)."""
    t_ns = max(MIN_TIME_NS, min(MAX_TIME_NS, t_ns))
    seconds, frac = divmod(t_ns, 1_000_000_000)
    stamp = _EPOCH + timedelta(seconds=seconds)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def version_tuple(version: str) -> tuple[int, ...]:
    """'v2.3.0' / '2.7.4' -> (2, 3, 0); unknown -> () (treated as recent)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(g) for g in match.groups() if g is not None) if match else ()


class V2Writer:
    precise_delete = True

    def __init__(
        self,
        base_url: str,
        token: str,
        org: str,
        bucket: str,
        http: V1Http,
        *,
        retention_s: int | None = None,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.org, self.bucket = org, bucket
        self._http = http
        self._retention_s = retention_s
        self._attempts, self._backoff_s = max(1, attempts), backoff_s
        # retries=False: the client must not retry behind our back (we count attempts).
        self._client = InfluxDBClient(
            url=base_url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    # -- errors and retries ----------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        last: Exception | None = None
        for attempt in range(self._attempts):
            try:
                return fn()
            except ApiException as exc:
                status = exc.status or 0
                if 400 <= status < 500 and status not in (408, 429):
                    raise classify(
                        status, _message(exc), what, write=what == "write", scheme="influxdb2"
                    ) from exc
                last = exc
            except (HTTPError, OSError) as exc:
                last = exc
            if attempt + 1 < self._attempts:
                delay = self._backoff_s * 2**attempt
                log.warning("influxdb2 %s failed (%s), retry in %.1fs", what, last, delay)
                time.sleep(delay)
        raise StoreUnavailable(
            f"influxdb2 {what} failed after {self._attempts} attempts: {last}"
        ) from last

    # -- Writer protocol -------------------------------------------------------------
    def setup(self) -> None:
        """Bucket (with the retention from the URL, if any) and, on servers older than
        2.4, the DBRP mapping that lets InfluxQL on ``/query`` find the bucket."""
        from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

        version = self._http.ping()
        buckets = self._client.buckets_api()
        found = self._call(
            "bucket lookup", lambda: buckets.find_buckets(name=self.bucket, org=self.org)
        )
        bucket = found.buckets[0] if found is not None and found.buckets else None
        if bucket is None:
            rules = (
                [BucketRetentionRules(type="expire", every_seconds=self._retention_s)]
                if self._retention_s
                else []
            )
            bucket = self._call(
                "bucket creation",
                lambda: buckets.create_bucket(
                    bucket_name=self.bucket, org=self.org, retention_rules=rules
                ),
            )
        if version_tuple(version) and version_tuple(version) < (2, 4):
            self._ensure_dbrp(bucket.id)

    def _ensure_dbrp(self, bucket_id: str) -> None:
        from influxdb_client.domain.dbrp_create import DBRPCreate
        from influxdb_client.service.dbr_ps_service import DBRPsService

        service = DBRPsService(self._client.api_client)
        found = self._call("DBRP lookup", lambda: service.get_dbr_ps(org=self.org, db=self.bucket))
        if found is not None and getattr(found, "content", None):
            return
        mapping = DBRPCreate(
            org=self.org,
            bucket_id=bucket_id,
            database=self.bucket,
            retention_policy="autogen",
            default=True,
        )
        self._call("DBRP creation", lambda: service.post_dbrp(mapping))

    def write(self, body: str) -> None:
        from influxdb_client import WritePrecision

        if not body:
            return
        self._call(
            "write",
            lambda: self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str constant
            ),
        )

    def delete(self, measurement: str, start_ns: int, end_ns: int, tags: dict[str, str]) -> bool:
        check_name(measurement, "measurement")
        predicate = f'_measurement="{measurement}"'
        for key, value in tags.items():
            check_name(key, "tag key")
            if value != "*":
                check_name(value, key)
            predicate += f' AND {key}="{value}"'
        start, stop = rfc3339_ns(start_ns), rfc3339_ns(end_ns - 1)  # stop is inclusive
        api = self._client.delete_api()
        self._call(
            "delete",
            lambda: api.delete(start, stop, predicate, bucket=self.bucket, org=self.org),
        )
        return True

    def close(self) -> None:
        self._write_api.close()
        self._client.close()


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "reason", None) or str(exc)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text.strip()[:500]
