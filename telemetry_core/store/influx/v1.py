"""The ``influxdb://`` writer: line protocol on ``/write``, and deletes where the server has one.

Writes are the same on every generation. Deletes (only retention deletes on
``influxdb://``; rollup windows are replaced with tombstones, see the layout notes) are not:

* **1.x**: ``DELETE FROM ... WHERE time ...`` on ``/query``.
* **2.x**: its v1 API has no ``DELETE``; ``/api/v2/delete`` does it, with the token and
  the organisation from ``?org=`` in the store URL. The bucket is the database's name
  (``<database>/<rp>`` with ``?rp=``), as 2.4+ maps it.
* **3.x**: no way to delete points at all (only whole tables or databases).

:meth:`V1Writer.retention_problem` says, from the server's ``X-Influxdb-Version``, whether
retention can delete here, so the Dagster code location can refuse to load instead of
letting the daily job fail (``telemetry_core.store.influx.retention.check_retention``).
"""

from __future__ import annotations

import contextlib
import json
import re
from urllib.parse import urlencode

from telemetry_core.identifiers import check_name
from telemetry_core.store.base import StoreUnavailable
from telemetry_core.store.influx.http import (
    InfluxRequestError,
    V1Http,
    classify,
    error_message,
    quote_ident,
)
from telemetry_core.store.influx.layout import tag_filters
from telemetry_core.store.influx.v2 import rfc3339_ns


def major_version(version: str) -> int | None:
    """'1.6.7' -> 1, 'v2.7.4' -> 2, '3.0.1-...' -> 3; None when the header says nothing."""
    match = re.match(r"v?(\d+)\.", version.strip())
    return int(match.group(1)) if match else None


class V1Writer:
    """Writes through ``/write``; deletes as the server generation allows (see above)."""

    precise_delete = False

    def __init__(self, http: V1Http, *, org: str | None = None, token: str | None = None) -> None:
        self._http = http
        self._org = org
        self._token = token
        self._major: int | None = None
        self._version: str | None = None

    def setup(self) -> None:
        (series,) = self._http.query("SHOW DATABASES")  # raises when the server is down
        if any(row and row[0] == self._http.database for s in series for row in s.values):
            return
        # 2.x/3.x refuse CREATE DATABASE on /query (some with a 5xx): their buckets map,
        # or their databases appear, on the first write.
        with contextlib.suppress(InfluxRequestError, StoreUnavailable):
            self._http.query(f"CREATE DATABASE {quote_ident(self._http.database)}")

    def write(self, body: str) -> None:
        self._http.write(body)

    def server_version(self) -> str:
        """``X-Influxdb-Version`` of the server ('' when it sends none), asked once."""
        if self._version is None:
            self._version = self._http.ping()
            self._major = major_version(self._version)
        return self._version

    def retention_problem(self) -> str | None:
        """Why retention cannot delete points on this server (one line), or None."""
        version = self.server_version()
        where = f"InfluxDB {version} at {self._http.host}:{self._http.port}"
        if self._major == 2:
            needs = {
                "?org=<org> in the store URL": self._org,
                "a token in INFLUXDB_TOKEN": self._token,
            }
            missing = [what for what, have in needs.items() if not have]
            if missing:
                return (
                    f"retention on {where} deletes through /api/v2/delete, which needs "
                    f"{' and '.join(missing)}; or set [retention] enabled = false and give "
                    "the bucket a retention period"
                )
        elif self._major is not None and self._major >= 3:
            return (
                f"{where} cannot delete points (InfluxDB 3 deletes only whole tables or "
                "databases): set [retention] enabled = false in the config and give the "
                "database a retention period instead"
            )
        return None

    def delete(self, measurement: str, start_ns: int, end_ns: int, tags: dict[str, str]) -> bool:
        """Delete ``[start, end)``; False when this server cannot delete points. 401/403
        raise (an authorisation problem is not "cannot delete")."""
        self.server_version()
        if self._major == 2:
            return self._delete_v2(measurement, start_ns, end_ns, tags)
        if self._major is not None and self._major >= 3:
            return False
        try:
            self._http.query(
                f"DELETE FROM {quote_ident(measurement)} WHERE time >= {int(start_ns)} "
                f"AND time < {int(end_ns)}{tag_filters(**tags)}"
            )
        except InfluxRequestError:
            return False
        return True

    def _delete_v2(
        self, measurement: str, start_ns: int, end_ns: int, tags: dict[str, str]
    ) -> bool:
        if not self._org or not self._token:
            return False
        check_name(measurement, "measurement")
        predicate = f'_measurement="{measurement}"'
        for key, value in tags.items():
            check_name(key, "tag key")
            check_name(value, key)
            predicate += f' AND {key}="{value}"'
        http = self._http
        bucket = http.database + (f"/{http.retention_policy}" if http.retention_policy else "")
        body = {
            "start": rfc3339_ns(start_ns),
            "stop": rfc3339_ns(end_ns - 1),
            "predicate": predicate,
        }
        status, _, data = http.request(
            "POST",
            "/api/v2/delete?" + urlencode({"org": self._org, "bucket": bucket}),
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        if status >= 300:
            raise classify(status, error_message(data), "delete")
        return True

    def close(self) -> None:
        return None
