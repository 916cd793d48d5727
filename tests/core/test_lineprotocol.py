"""Line protocol encoding, and exactly what the InfluxDB backends send over HTTP.

The escaping rules are checked three ways: a table of known encodings, a hypothesis
round trip through an independent parser written here from the line protocol reference,
and requests captured by a local ``http.server`` standing in for InfluxDB 1.x and 2.x
(CI has no InfluxDB 2.x, so this is how ``influxdb2://`` is covered there).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_core.lineprotocol import (
    LineProtocolError,
    encode_frame,
    encode_points,
    escape_key,
    escape_measurement,
    escape_string_value,
)
from telemetry_core.store import (
    StoreError,
    StoreRefused,
    StoreUnavailable,
    check_retention,
    open_store,
)
from telemetry_core.store.influx.http import InfluxAuthError

# -- an independent parser ------------------------------------------------------------


def _split(text: str, seps: str, escapable: str) -> tuple[str, str, str]:
    """Read up to the first unescaped char of ``seps``; return (token, sep, rest)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
            continue
        if ch in seps:
            return "".join(out), ch, text[i + 1 :]
        out.append(ch)
        i += 1
    return "".join(out), "", ""


def _field_value(text: str) -> tuple[object, str]:
    if text.startswith('"'):
        out, i = [], 1
        while text[i] != '"':
            if text[i] == "\\" and text[i + 1] in '"\\':
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out), text[i + 1 :]
    end = min((text.index(c) for c in ", " if c in text), default=len(text))
    raw, rest = text[:end], text[end:]
    if raw in ("true", "false"):
        return raw == "true", rest
    if raw.endswith("i"):
        return int(raw[:-1]), rest
    return float(raw), rest


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    measurement, sep, rest = _split(line, ", ", ", ")
    tags: dict[str, str] = {}
    while sep == ",":
        key, _, rest = _split(rest, "=", ",= ")
        tags[key], sep, rest = _split(rest, ", ", ",= ")
    fields: dict[str, object] = {}
    while True:
        key, _, rest = _split(rest, "=", ",= ")
        fields[key], rest = _field_value(rest)
        if rest.startswith(","):
            rest = rest[1:]
            continue
        return measurement, tags, fields, int(rest.strip())


# -- escaping table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "raw", "encoded"),
    [
        (escape_measurement, "energy", "energy"),
        (escape_measurement, "a,b c", r"a\,b\ c"),
        (escape_measurement, "a=b", "a=b"),  # '=' needs no escape in a measurement
        (escape_key, "a,b=c d", r"a\,b\=c\ d"),
        (escape_key, 'quote"s', 'quote"s'),
        (escape_key, "ünïcode", "ünïcode"),
        (escape_string_value, 'say "hi"', r'"say \"hi\""'),
        (escape_string_value, "back\\slash", r'"back\\slash"'),
        (escape_string_value, "a,b=c d", '"a,b=c d"'),
    ],
)
def test_escaping_table(fn, raw, encoded):
    assert fn(raw) == encoded


@pytest.mark.parametrize("bad", ["", "a\nb", "a\rb", "ends\\", "a\\,b", "a\\ b"])
def test_unrepresentable_names_refused(bad):
    with pytest.raises(LineProtocolError):
        escape_key(bad)


def test_point_lines_are_complete_and_exact():
    body = encode_points([("energy", "site-a", "m-7", "power_w", 1_700_000_000_123_456_789, 0.1)])
    assert body == (
        "raw,device_id=m-7,field=power_w,measurement=energy,site_id=site-a "
        "value=0.1 1700000000123456789\n"
    )
    with pytest.raises(LineProtocolError):
        encode_points([("e", "s", "d", "f", 1, float("nan"))])
    with pytest.raises(LineProtocolError):
        encode_points([("e", "s", "d", "f", 1, float("-inf"))])


def test_frame_refuses_nulls_rather_than_partial_points():
    df = pl.DataFrame({"t": [1], "tag": ["x"], "v": [None]}, schema_overrides={"v": pl.Float64})
    with pytest.raises(LineProtocolError, match="null"):
        encode_frame(df, "m", tags=["tag"], fields={"v": "float"}, time="t")


# -- round trip -----------------------------------------------------------------------

_NAME = st.text(
    st.characters(blacklist_characters="\n\r\\", blacklist_categories=("Cs",)), min_size=1
)
_MEASUREMENT = _NAME.filter(lambda s: not s.startswith("#"))
_STRING = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)))
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
_INT = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    measurement=_MEASUREMENT,
    rows=st.lists(
        st.tuples(_NAME, _NAME, _FLOAT, _INT, st.booleans(), _STRING, _INT), min_size=1, max_size=8
    ),
)
def test_frame_round_trip(measurement, rows):
    df = pl.DataFrame(
        rows,
        schema={"tag a": pl.String, "k=v,": pl.String, "f": pl.Float64, "i": pl.Int64,
                "b": pl.Boolean, "s": pl.String, "t": pl.Int64},
        orient="row",
    )  # fmt: skip
    fields = {"f": "float", "i": "int", "b": "bool", "s": "str"}
    body = encode_frame(df, measurement, tags=["tag a", "k=v,"], fields=fields, time="t")
    parsed = [parse_line(line) for line in body.split("\n")[:-1]]
    assert parsed == [
        (measurement, {"k=v,": k, "tag a": a}, {"f": f, "i": i, "b": b, "s": s}, t)
        for a, k, f, i, b, s, t in rows
    ]
    assert all(list(tags) == sorted(tags) for _, tags, _, _ in parsed)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_NAME, _NAME, _NAME, _NAME, _INT, _FLOAT), min_size=1, max_size=8))
def test_points_round_trip(points):
    body = encode_points(points)
    parsed = [parse_line(line) for line in body.split("\n")[:-1]]
    assert parsed == [
        ("raw", {"device_id": d, "field": f, "measurement": m, "site_id": s}, {"value": v}, t)
        for m, s, d, f, t, v in points
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_NAME, _NAME, _NAME, _NAME, _INT, _FLOAT, _INT), min_size=1, max_size=8))
def test_points_with_sequences_round_trip(rows):
    points = [r[:6] for r in rows]
    seqs = [r[6] for r in rows]
    parsed = [parse_line(line) for line in encode_points(points, seqs=seqs).split("\n")[:-1]]
    assert parsed == [
        ("raw", {"device_id": d, "field": f, "measurement": m, "site_id": s},
         {"value": v, "seq": q}, t)
        for (m, s, d, f, t, v), q in zip(points, seqs, strict=True)
    ]  # fmt: skip
    constant = [parse_line(line) for line in encode_points(points, seqs=7).split("\n")[:-1]]
    assert all(fields == {"value": v, "seq": 7} for (_, _, fields, _), (*_, v) in
               zip(constant, points, strict=True))  # fmt: skip


def test_non_finite_values_refused_even_inside_a_finite_looking_batch():
    huge = [("e", "s", "d", "f", i, 1e308) for i in range(3)]  # the sum overflows: exact check
    assert encode_points(huge).count("value=1e+308") == 3
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(LineProtocolError):
            encode_points([*huge, ("e", "s", "d", "f", 9, bad)], seqs=[1, 2, 3, 4])


# -- what the backends send -----------------------------------------------------------


@dataclass
class FakeInflux:
    """Answers like InfluxDB 2.x (and the v1 API), records every request."""

    version: str = "v2.7.4"
    write_statuses: list[int] = field(default_factory=list)
    delete_statuses: list[int] = field(default_factory=list)
    requests: list[tuple[str, str, dict, bytes]] = field(default_factory=list)
    buckets: list[dict] = field(default_factory=list)
    port: int = 0

    def paths(self, method: str | None = None) -> list[str]:
        return [urlsplit(p).path for m, p, _, _ in self.requests if method in (None, m)]

    def find(self, path: str) -> list[tuple[str, str, dict, bytes]]:
        return [r for r in self.requests if urlsplit(r[1]).path == path]


def _handler(fake: FakeInflux):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            return None

        def _reply(self, status: int, body: object = None, headers: dict | None = None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"X-Influxdb-Version": fake.version, **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append((method, self.path, dict(self.headers), body))
            path = urlsplit(self.path).path
            if path == "/ping":
                return self._reply(204)
            if path == "/api/v2/orgs":
                return self._reply(200, {"orgs": [{"id": "0a0b0c0d0e0f0102", "name": "acme"}]})
            if path == "/api/v2/buckets" and method == "GET":
                return self._reply(200, {"buckets": fake.buckets})
            if path == "/api/v2/buckets":
                bucket = {**json.loads(body), "id": "b0b0b0b0b0b0b0b0"}
                fake.buckets.append(bucket)
                return self._reply(201, bucket)
            if path == "/api/v2/dbrps" and method == "GET":
                return self._reply(200, {"content": []})
            if path == "/api/v2/dbrps":
                mapping = {"id": "d1", "orgID": "0a0b0c0d0e0f0102", **json.loads(body)}
                return self._reply(201, mapping)
            if path == "/api/v2/write":
                status = fake.write_statuses.pop(0) if fake.write_statuses else 204
                err = {"code": "invalid", "message": "bad line"} if status != 204 else None
                return self._reply(status, err)
            if path == "/api/v2/delete":
                status = fake.delete_statuses.pop(0) if fake.delete_statuses else 204
                return self._reply(status, {"message": "no"} if status != 204 else None)
            if path == "/query":
                return self._reply(200, {"results": [{"statement_id": 0}]})
            if path == "/write":
                status = fake.write_statuses.pop(0) if fake.write_statuses else 204
                return self._reply(status, {"error": "boom"} if status != 204 else None)
            return self._reply(404, {"message": "not found"})

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeInflux]:
    state = FakeInflux()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


T0 = 1_795_000_500_000_000_000 - 1_795_000_500_000_000_000 % 900_000_000_000
POINTS = [("energy", "site-a", "m-7", "power_w", T0 + 5, 412.5)]


def _v2_store(fake: FakeInflux, monkeypatch, query: str = ""):
    monkeypatch.setenv("INFLUXDB_TOKEN", "s3cret")
    store = open_store(f"influxdb2://127.0.0.1:{fake.port}/telemetry?org=acme{query}")
    store._writer._backoff_s = 0.01  # keep retry tests fast
    return store


def test_influxdb2_write_is_synchronous_line_protocol(fake, monkeypatch):
    store = _v2_store(fake, monkeypatch)
    assert store.write_points(POINTS, seqs=[41]).points == 1
    (write,) = fake.find("/api/v2/write")  # one write, nothing else written
    method, path, headers, body = write
    params = parse_qs(urlsplit(path).query)
    assert method == "POST"
    assert params == {"org": ["acme"], "bucket": ["telemetry"], "precision": ["ns"]}
    assert headers["Authorization"] == "Token s3cret"
    assert body.decode() == encode_points(POINTS, seqs=[41])
    assert body.decode().endswith(f" value=412.5,seq=41i {T0 + 5}\n")
    queries = [parse_qs(q[3].decode()) for q in fake.find("/query")]
    assert all(f["db"] == ["telemetry"] and f["epoch"] == ["ns"] for f in queries)
    assert all(q[2]["Authorization"] == "Token s3cret" for q in fake.find("/query"))
    statements = [f["q"][0] for f in queries]
    assert not any("writers" in q for q in statements)  # no registry of writers any more
    assert any('last("seq")' in q for q in statements)  # what may be stored already
    assert "rolled_up" in statements[-1]
    store.close()


def test_influxdb2_setup_creates_bucket_with_retention_and_old_servers_get_dbrp(fake, monkeypatch):
    fake.version = "v2.3.0"
    store = _v2_store(fake, monkeypatch, "&retention=3600")
    store.ping()
    (create,) = [r for r in fake.find("/api/v2/buckets") if r[0] == "POST"]
    bucket = json.loads(create[3])
    assert bucket["name"] == "telemetry"
    assert bucket["retentionRules"] == [{"type": "expire", "everySeconds": 3600}]
    (dbrp,) = [r for r in fake.find("/api/v2/dbrps") if r[0] == "POST"]
    mapping = json.loads(dbrp[3])
    assert mapping["database"] == "telemetry" and mapping["bucketID"] == "b0b0b0b0b0b0b0b0"
    assert mapping["retention_policy"] == "autogen" and mapping["default"] is True
    store.close()


def test_influxdb2_recent_server_needs_no_dbrp_and_existing_bucket_is_kept(fake, monkeypatch):
    fake.buckets.append(
        {"id": "b1", "name": "telemetry", "orgID": "0a0b0c0d0e0f0102", "retentionRules": []}
    )
    store = _v2_store(fake, monkeypatch)
    store.ping()
    assert [r[0] for r in fake.find("/api/v2/buckets")] == ["GET"]
    assert fake.find("/api/v2/dbrps") == []
    store.close()


def test_influxdb2_write_retries_then_surfaces(fake, monkeypatch):
    store = _v2_store(fake, monkeypatch)
    store.write_points(POINTS)
    base = len(fake.find("/api/v2/write"))
    fake.write_statuses = [503, 503]
    store.write_points(POINTS)  # third attempt succeeds
    assert len(fake.find("/api/v2/write")) == base + 3
    fake.write_statuses = [503, 503, 503]
    with pytest.raises(StoreUnavailable, match="3 attempts"):
        store.write_points(POINTS)
    assert len(fake.find("/api/v2/write")) == base + 6
    fake.write_statuses = [400]
    with pytest.raises(StoreRefused, match="400"):
        store.write_points(POINTS)
    assert len(fake.find("/api/v2/write")) == base + 7  # a refusal is not retried
    fake.write_statuses = [401]
    with pytest.raises(InfluxAuthError, match="INFLUXDB_TOKEN"):
        store.write_points(POINTS)
    assert len(fake.find("/api/v2/write")) == base + 8
    store.close()


def test_influxdb2_replace_deletes_inclusive_range_then_writes(fake, monkeypatch):
    store = _v2_store(fake, monkeypatch)
    rows = pl.DataFrame(
        {"window_start": [T0], "measurement": ["energy"], "site_id": ["site-a"],
         "device_id": ["m-7"], "field": ["power_w"], "count": [2], "sum": [3.0],
         "min": [1.0], "max": [2.0], "first": [1.0], "last": [2.0],
         "first_time": [T0 + 1], "last_time": [T0 + 2], "is_work_hours": [None]},
        schema_overrides={"is_work_hours": pl.Boolean},
    )  # fmt: skip
    store.replace_rollups("15m", T0, T0 + 900_000_000_000, rows, site_id="site-a")
    (delete,) = fake.find("/api/v2/delete")
    assert parse_qs(urlsplit(delete[1]).query) == {"bucket": ["telemetry"], "org": ["acme"]}
    request = json.loads(delete[3])
    assert request["predicate"] == '_measurement="rollup_15m" AND site_id="site-a"'
    assert request["start"].endswith(":00.000000000Z")
    assert request["stop"].endswith(":59.999999999Z")  # end - 1 ns: the next window survives
    (write,) = fake.find("/api/v2/write")
    lines = write[3].decode().splitlines()
    assert lines[0] == (
        "rollup_15m,device_id=m-7,field=power_w,measurement=energy,site_id=site-a "
        f"count=2i,sum=3.0,min=1.0,max=2.0,first=1.0,last=2.0,first_time={T0 + 1}i,"
        f"last_time={T0 + 2}i,is_work_hours=-1i {T0}"
    )
    assert lines[1].startswith("rolled_up,level=15m,site_id=site-a at=")
    assert fake.paths("POST").index("/api/v2/delete") < fake.paths("POST").index("/api/v2/write")
    store.close()


def test_influxdb2_needs_org_and_token(monkeypatch):
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    with pytest.raises(ValueError, match="INFLUXDB_TOKEN"):
        open_store("influxdb2://127.0.0.1:8086/telemetry?org=acme")
    monkeypatch.setenv("INFLUXDB_TOKEN", "t")
    with pytest.raises(ValueError, match="org"):
        open_store("influxdb2://127.0.0.1:8086/telemetry")


def test_influxdb_v1_auth_and_errors(fake, monkeypatch):
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    store = open_store(f"influxdb://user:p%40ss@127.0.0.1:{fake.port}/telemetry")
    store.write_points(POINTS)
    show, create, *_ = fake.find("/query")
    assert parse_qs(show[3].decode())["q"] == ["SHOW DATABASES"]
    assert parse_qs(create[3].decode())["q"] == ['CREATE DATABASE "telemetry"']
    (write,) = fake.find("/write")
    assert parse_qs(urlsplit(write[1]).query) == {"db": ["telemetry"], "precision": ["ns"]}
    assert write[2]["Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert write[3].decode() == encode_points(POINTS, seqs=0)
    fake.write_statuses = [500]
    with pytest.raises(StoreUnavailable, match="500"):
        store.write_points(POINTS)
    fake.write_statuses = [400]
    with pytest.raises(StoreRefused, match="boom"):
        store.write_points(POINTS)
    for status in (401, 403):
        fake.write_statuses = [status]
        with pytest.raises(InfluxAuthError, match=r"not authorised.*INFLUXDB_TOKEN.*password"):
            store.write_points(POINTS)
    store.close()
    monkeypatch.setenv("INFLUXDB_TOKEN", "tok")
    token_store = open_store(f"influxdb://127.0.0.1:{fake.port}/telemetry")
    token_store.ping()
    assert fake.requests[-1][2]["Authorization"] == "Token tok"
    token_store.close()


@pytest.mark.parametrize(
    "url",
    [
        "influxdb://127.0.0.1:8086/",
        "influxdb://127.0.0.1:8086/a/b",
        "influxdb://127.0.0.1:8086/bad'name",
        "influxdb://127.0.0.1:8086/db?rp=x%22y",
    ],
)
def test_bad_influx_urls_refused(url):
    with pytest.raises(ValueError):
        open_store(url)


def test_influx_write_path_does_not_load_polars():
    """The daemon writes through this path and must stay light (see test_boundary.py)."""
    code = (
        "import sys\n"
        "from telemetry_core.store import StoreUnavailable, open_store\n"
        "store = open_store('influxdb://127.0.0.1:9/telemetry')\n"
        "try:\n"
        "    store.write_points([('energy', 'site-a', 'm-7', 'power_w', 1, 1.0)])\n"
        "except StoreUnavailable:\n"
        "    pass\n"
        "print('polars' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_delete_range_formatting():
    from telemetry_core.store.influx.v2 import rfc3339_ns, version_tuple

    assert rfc3339_ns(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339_ns(1_795_000_000_123_456_789 - 1) == "2026-11-18T11:06:40.123456788Z"
    assert rfc3339_ns(-1) == "1969-12-31T23:59:59.999999999Z"
    assert version_tuple("v2.3.0") == (2, 3, 0) < (2, 4)
    assert version_tuple("2.7.11") == (2, 7, 11) and version_tuple("OSS") == ()


# -- retention through influxdb:// on each server generation ----------------------------


def _raw_retention_delete(url: str) -> dict[int, int]:
    """What retention_job does for one raw window the fake counts as holding 0 rows."""
    store = open_store(url)
    try:
        return store.retention_delete(None, {T0: 0})
    finally:
        store.close()


def test_retention_on_2x_deletes_through_the_delete_api_with_org_and_token(fake, monkeypatch):
    monkeypatch.setenv("INFLUXDB_TOKEN", "s3cret")
    url = f"influxdb://127.0.0.1:{fake.port}/telemetry?org=acme"
    check_retention(url)  # 2.x with org and token: retention can work, the load passes
    assert _raw_retention_delete(url) == {T0: 0}
    (delete,) = fake.find("/api/v2/delete")
    assert parse_qs(urlsplit(delete[1]).query) == {"org": ["acme"], "bucket": ["telemetry"]}
    assert delete[2]["Authorization"] == "Token s3cret"
    request = json.loads(delete[3])
    assert request["predicate"] == '_measurement="raw"'
    assert request["start"].endswith(":00.000000000Z")
    assert request["stop"].endswith(":59.999999999Z")  # [start, end) as start .. end - 1 ns
    assert not any("DELETE" in parse_qs(q[3].decode())["q"][0] for q in fake.find("/query"))


def test_retention_on_2x_without_org_fails_when_the_code_location_loads(fake, monkeypatch):
    monkeypatch.setenv("INFLUXDB_TOKEN", "s3cret")
    with pytest.raises(StoreError, match=r"InfluxDB v2\.7\.4 .*needs \?org=<org> in the store URL"):
        check_retention(f"influxdb://127.0.0.1:{fake.port}/telemetry")
    monkeypatch.delenv("INFLUXDB_TOKEN")
    with pytest.raises(StoreError, match="org=<org> in the store URL and a token in INFLUXDB"):
        check_retention(f"influxdb://127.0.0.1:{fake.port}/telemetry")
    assert fake.paths() == ["/ping", "/ping"]  # asked the server, nothing else


def test_retention_on_3x_fails_when_the_code_location_loads(fake, monkeypatch):
    fake.version = "3.0.1"
    monkeypatch.setenv("INFLUXDB_TOKEN", "s3cret")
    url = f"influxdb://127.0.0.1:{fake.port}/telemetry?org=acme"
    with pytest.raises(StoreError, match=r"cannot delete points.*\[retention\] enabled = false"):
        check_retention(url)
    with pytest.raises(StoreError, match="cannot delete points"):  # and the job, if run
        _raw_retention_delete(url)
    assert fake.find("/api/v2/delete") == []


def test_retention_delete_401_is_an_authorisation_error_not_cannot_delete(fake, monkeypatch):
    monkeypatch.setenv("INFLUXDB_TOKEN", "read-only")
    fake.delete_statuses = [403]
    with pytest.raises(InfluxAuthError, match=r"not authorised.*INFLUXDB_TOKEN") as caught:
        _raw_retention_delete(f"influxdb://127.0.0.1:{fake.port}/telemetry?org=acme")
    assert "cannot delete" not in str(caught.value)


def test_retention_on_1x_uses_delete_and_an_unreachable_server_is_not_judged(fake, monkeypatch):
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    fake.version = "1.8.10"
    url = f"influxdb://127.0.0.1:{fake.port}/telemetry"
    check_retention(url)
    assert _raw_retention_delete(url) == {T0: 0}
    statements = [parse_qs(q[3].decode())["q"][0] for q in fake.find("/query")]
    assert any(q.startswith('DELETE FROM "raw" WHERE time >= ') for q in statements)
    check_retention("influxdb://127.0.0.1:9/telemetry")  # nothing answers: no verdict
    check_retention("sqlite:///nowhere/never-created.db")  # other stores: nothing to ask


def test_a_large_batch_goes_in_parts_and_a_failed_part_stops_it(fake, monkeypatch):
    """Parts of 2,500 points, each encoded while the server writes the one before; a
    failing part raises once every part sent is answered, and nothing after it is sent."""
    monkeypatch.delenv("INFLUXDB_TOKEN", raising=False)
    store = open_store(f"influxdb://127.0.0.1:{fake.port}/telemetry")
    batch = [("energy", "site-a", f"m-{i % 7}", "power_w", T0 + i, float(i)) for i in range(6000)]
    store.write_points(batch, seqs=list(range(6000)))
    parts = [r[3].decode() for r in fake.find("/write")]
    assert [p.count("\n") for p in parts] == [2500, 2500, 1000]
    assert "".join(parts) == encode_points(batch, seqs=list(range(6000)))
    fake.write_statuses = [204, 500]
    with pytest.raises(StoreUnavailable, match="500"):
        store.write_points([(*p[:4], p[4] + 10_000, p[5]) for p in batch], seqs=[5] * 6000)
    assert len(fake.find("/write")) == 5
    store.close()
