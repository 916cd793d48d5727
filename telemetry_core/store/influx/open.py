"""InfluxDB stores: ``influxdb://`` (v1-compatible API) and ``influxdb2://`` (influxdb-client).

URLs
----
* ``influxdb://[user:pass@]host:port/<database>[?rp=<policy>&org=<org>&tls=true]`` --
  InfluxDB 1.x, 2.x (OSS >= 2.4 maps a bucket of the same name) and 3.x. A token in
  ``INFLUXDB_TOKEN`` is sent as ``Authorization: Token ...``; otherwise user and password
  go as basic auth. The database is created when missing (servers that cannot, 2.x/3.x,
  create or map it themselves). ``org`` is only used by retention on 2.x, which deletes
  through ``/api/v2/delete`` (the v1 API of 2.x has no DELETE; see ``retention.py``).
* ``order_window`` (the verification window of earlier releases) is refused with the
  reason: stream order now rests on one raw writer per database (docs/influxdb.md).
* ``influxdb2://host:port/<bucket>?org=<org>[&retention=<seconds>&tls=true]`` -- InfluxDB
  2.x, token from ``INFLUXDB_TOKEN``: writes through influxdb-client on
  ``/api/v2/write`` (synchronous, bounded retries, errors surfaced), bucket and DBRP
  set-up, the delete API for replacing windows; reads through the same InfluxQL path.

Data layout (one database or bucket, dedicated to this platform)
----------------------------------------------------------------
``raw,device_id=D,field=F,measurement=M,site_id=S value=<float>,seq=<int>i <time ns>``
    One measurement for every raw point; the four key columns are tags, so one InfluxDB
    series is exactly one of our series and a point's identity (tags + time) is exactly
    ours (measurement, site, device, field, time): rewriting it replaces the value. Every
    write carries both fields, so a rewrite is always a complete field set. ``seq`` is the
    JetStream sequence of the point's message (0 for writes from outside the stream):
    see :mod:`telemetry_core.store.influx.order`. Reads select ``value`` only. Why not one
    InfluxDB measurement per telemetry measurement: the raw->15m rollup is then one
    ``GROUP BY time(15m), *`` over one measurement, names can never collide with the
    rollup measurements, and the tags keep the column names the API returns.
``rollup_<level>,<same tags> count=<n>i,sum=..,min=..,max=..,first=..,last=..,
first_time=<ns>i,last_time=<ns>i,is_work_hours=<1|0|-1>i <window_start>``
    One measurement per level (``rollup_15m``, ``rollup_1h``, ``rollup_site_15m``...),
    timestamped by window start: a window is a plain time range, the same for every
    series, so replacing one is a time-range operation. Every field is written on every
    row (InfluxDB merges fields of a rewritten point), hence ``is_work_hours`` as an
    integer with -1 for "not known" instead of a missing field. A row that a re-run no
    longer produces is overwritten with ``count=0`` (a tombstone; reads skip it) on
    ``influxdb://``, because the v1 API of 2.x/3.x has no DELETE; ``influxdb2://`` deletes
    the window through the delete API instead.
``rolled_up,level=L,site_id=S|* at=<ns>i <window_start>``
    Which windows were rolled up (at what time), per level and site (``*``: all sites).
``late_windows,site_id=S points=<n>i,first_marked_at=<ns>i,last_marked_at=<ns>i
[,cleared_up_to=<ns>i] <window_start>``
    Late-window marks. Clearing writes only ``cleared_up_to``; InfluxDB merges it into
    the mark, and a mark is live while ``last_marked_at > cleared_up_to``. A mark touched
    by the daemon after the clear's cut-off therefore survives without any locking.

Series cardinality is the number of (measurement, site, device, field) combinations plus
a few per site for the bookkeeping measurements: the same as the SQLite store's series
table. Retention deletes with ``DELETE`` on 1.x and through ``/api/v2/delete`` on 2.x
(``v1.py``, ``v2.py``); InfluxDB 3.x cannot delete points: give the database a retention
period and switch ``[retention]`` off (the code location refuses to load otherwise).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from telemetry_core.identifiers import check_name
from telemetry_core.store.base import StoreError
from telemetry_core.store.influx.http import InfluxRequestError, V1Http
from telemetry_core.store.influx.store import InfluxStore
from telemetry_core.store.influx.v1 import V1Writer

__all__ = ["InfluxRequestError", "InfluxStore", "V1Writer", "open_influx"]

_TRUE = ("1", "true", "yes", "on")


def _parse(url: str) -> tuple[str, str, int, str, dict[str, str]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    name = parts.path.lstrip("/")
    if not parts.hostname or not name or "/" in name:
        hint = "<database>" if scheme == "influxdb" else "<bucket>?org=<org>"
        raise StoreError(f"InfluxDB store URL must look like {scheme}://host:8086/{hint}")
    check_name(unquote(name), "database" if scheme == "influxdb" else "bucket")
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return scheme, parts.hostname, parts.port or 8086, unquote(name), params


def open_influx(url: str) -> InfluxStore:
    """Build a store from its URL. Nothing is contacted yet: set-up (database, bucket,
    DBRP mapping) happens on first use, so a daemon started while InfluxDB is down backs
    off with StoreUnavailable instead of crashing."""
    scheme, host, port, name, params = _parse(url)
    parts = urlsplit(url)
    token = os.environ.get("INFLUXDB_TOKEN") or None
    tls = params.get("tls", "").lower() in _TRUE
    timeout = float(params.get("timeout", "30"))
    if "order_window" in params:
        raise StoreError(
            "the order_window URL option is gone: stream order on InfluxDB now rests on one "
            "ingest daemon per database, with no verification window (docs/influxdb.md, "
            "'Stream order'); remove it from the store URL"
        )
    if scheme == "influxdb":
        rp = params.get("rp")
        if rp is not None:
            check_name(rp, "retention policy")
        http = V1Http(
            host,
            port,
            name,
            token=token,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            timeout_s=timeout,
            retention_policy=rp,
        )
        org = params.get("org") or None
        return InfluxStore(url, http, V1Writer(http, org=org, token=token))
    if scheme == "influxdb2":
        from telemetry_core.store.influx.v2 import V2Writer

        org = params.get("org")
        if not org:
            raise StoreError("influxdb2:// store URL needs ?org=<organisation>")
        if not token:
            raise StoreError("influxdb2:// needs a token in INFLUXDB_TOKEN")
        http = V1Http(host, port, name, token=token, tls=tls, timeout_s=timeout)
        base = f"{'https' if tls else 'http'}://{host}:{port}"
        retention = int(params["retention"]) if "retention" in params else None
        writer = V2Writer(base, token, org, name, http, retention_s=retention, timeout_s=timeout)
        return InfluxStore(url, http, writer)
    raise StoreError(f"not an InfluxDB store URL: {scheme}://")
