"""Decoder/validator: every accepted form and every rejection reason, plus a property test."""

from __future__ import annotations

import calendar
import gzip
import json
import math
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_core import reasons
from telemetry_core.decode import Limits, decode_message
from telemetry_core.identifiers import is_field, is_name

NS = 10**9
NOW = 1_795_000_000 * NS  # 2026-11-18
SUBJ = "iot.energy.site-a.meter-7"


DEFAULT_LIMITS = Limits()


def run(payload, headers=None, subject=SUBJ, limits=DEFAULT_LIMITS):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_message(subject, data, headers, NOW, limits)


def points(result):
    return sorted((p[3], p[4], p[5]) for p in result.points)


EPOCH_0839 = calendar.timegm((2026, 11, 18, 8, 39, 0))  # independent of our parser
T = NOW - 60 * NS
T_S = T // NS


@pytest.mark.parametrize(
    ("payload", "headers", "expected"),
    [
        ({"timestamp": T_S, "power_w": 412.5, "energy_kwh": 0.103}, None,
         [("energy_kwh", T, 0.103), ("power_w", T, 412.5)]),
        ({"timestamp": T // 10**6, "power_w": 1}, None, [("power_w", T, 1.0)]),  # ms
        ({"timestamp": T // 10**3, "power_w": 1}, None, [("power_w", T, 1.0)]),  # µs
        ({"timestamp": T, "power_w": 1}, None, [("power_w", T, 1.0)]),  # ns
        ({"timestamp": T_S + 0.5, "power_w": 1}, None, [("power_w", T + NS // 2, 1.0)]),  # float s
        ({"timestamp": "2026-11-18T08:39:00.123456789Z", "x": 1}, None,
         [("x", EPOCH_0839 * NS + 123456789, 1.0)]),
        ({"timestamp": "2026-11-18T09:39:00+01:00", "x": 1}, None, [("x", EPOCH_0839 * NS, 1.0)]),
        ({"timestamp": T_S, "on": True, "off": False}, None, [("off", T, 0.0), ("on", T, 1.0)]),
        ({"timestamp": T_S, "site_id": "site-a", "device_id": "meter-7", "v": 2}, None, [("v", T, 2.0)]),
        ([{"timestamp": T_S, "a": 1}, {"timestamp": T_S + 1, "a": 2}], None,
         [("a", T, 1.0), ("a", T + NS, 2.0)]),
        ({"timestamp": T_S, "readings": [{"name": "temp.c", "value": 21.5, "unit": "C", "quality": "good"},
                                         {"name": "rh", "value": 40, "timestamp": T_S + 1}]}, None,
         [("rh", T + NS, 40.0), ("temp.c", T, 21.5)]),
    ],
)  # fmt: skip
def test_accepted_forms(payload, headers, expected):
    result = run(payload, headers)
    assert result.rejections == []
    assert points(result) == sorted(expected)
    assert {p[:3] for p in result.points} == {("energy", "site-a", "meter-7")}


def test_rfc3339_keeps_nanoseconds():
    result = run({"timestamp": "2026-11-18T08:39:59.999999999Z", "x": 1})
    assert result.points[0][4] == (EPOCH_0839 + 59) * NS + 999_999_999


@pytest.mark.parametrize(
    ("content_type", "encoding", "encode"),
    [
        ("application/msgpack", "", msgspec.msgpack.encode),
        ("application/x-msgpack", "gzip", lambda o: gzip.compress(msgspec.msgpack.encode(o))),
        ("application/json", "gzip", lambda o: gzip.compress(json.dumps(o).encode())),
        ("", "deflate", lambda o: zlib.compress(json.dumps(o).encode())),
        ("", "deflate", lambda o: zlib.compress(json.dumps(o).encode())[2:-4]),  # raw deflate
        ("application/json; charset=utf-8", "identity", lambda o: json.dumps(o).encode()),
    ],
)
def test_encodings(content_type, encoding, encode):
    payload = encode({"timestamp": T_S, "power_w": 3.5})
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    result = run(payload, headers)
    assert result.rejections == [] and points(result) == [("power_w", T, 3.5)]


@pytest.mark.parametrize(
    ("payload", "headers", "subject", "reason"),
    [
        (b"\xff\xfenot json", None, SUBJ, reasons.UNDECODABLE),
        (b'{"timestamp": 1', None, SUBJ, reasons.UNDECODABLE),
        (b"x", {"Content-Type": "application/xml"}, SUBJ, reasons.UNDECODABLE),
        (b"x", {"Content-Encoding": "br"}, SUBJ, reasons.UNDECODABLE),
        (b"not gzip", {"Content-Encoding": "gzip"}, SUBJ, reasons.UNDECODABLE),
        (b"\xc1", {"Content-Type": "application/msgpack"}, SUBJ, reasons.UNDECODABLE),
        ({"power_w": 1}, None, SUBJ, reasons.MISSING_TIMESTAMP),
        ({"timestamp": None, "power_w": 1}, None, SUBJ, reasons.MISSING_TIMESTAMP),
        ({"timestamp": "2026-13-01T00:00:00Z", "x": 1}, None, SUBJ, reasons.BAD_TIMESTAMP),
        ({"timestamp": "yesterday", "x": 1}, None, SUBJ, reasons.BAD_TIMESTAMP),
        ({"timestamp": True, "x": 1}, None, SUBJ, reasons.BAD_TIMESTAMP),
        ({"timestamp": [1], "x": 1}, None, SUBJ, reasons.BAD_TIMESTAMP),
        (b'{"timestamp": %d, "x": NaN}' % T_S, None, SUBJ, reasons.NON_FINITE),
        (b'{"timestamp": %d, "x": -Infinity}' % T_S, None, SUBJ, reasons.NON_FINITE),
        (b'{"timestamp": %d, "x": 1e999}' % T_S, None, SUBJ, reasons.NON_FINITE),
        ({"timestamp": T_S, "x": 10**400}, None, SUBJ, reasons.NON_FINITE),
        ({"timestamp": T_S, "x": "12"}, None, SUBJ, reasons.NON_NUMERIC),
        ({"timestamp": T_S, "x": None}, None, SUBJ, reasons.NON_NUMERIC),
        ({"timestamp": T_S, "x": {"nested": 1}}, None, SUBJ, reasons.NON_NUMERIC),
        ({"timestamp": T_S, "readings": [{"name": "x"}]}, None, SUBJ, reasons.NON_NUMERIC),
        ({"timestamp": T_S}, None, SUBJ, reasons.NO_FIELDS),
        ([], None, SUBJ, reasons.NO_FIELDS),
        ({"timestamp": T_S, "readings": []}, None, SUBJ, reasons.NO_FIELDS),
        ({"timestamp": T_S, "readings": [{"value": 1}]}, None, SUBJ, reasons.NO_FIELDS),
        ({"timestamp": T_S, "bad field": 1}, None, SUBJ, reasons.BAD_IDENTIFIER),
        ({"timestamp": T_S, "x" * 65: 1}, None, SUBJ, reasons.BAD_IDENTIFIER),
        ({"timestamp": T_S, "readings": [{"name": "a/b", "value": 1}]}, None, SUBJ, reasons.BAD_IDENTIFIER),
        ({"timestamp": T_S, "x": 1}, None, "iot.energy.site-a", reasons.BAD_SUBJECT),
        ({"timestamp": T_S, "x": 1}, None, "iot.energy.site-a.m.extra", reasons.BAD_SUBJECT),
        ({"timestamp": T_S, "x": 1}, None, "iot.ener$gy.site-a.m", reasons.BAD_SUBJECT),
        ({"timestamp": T_S, "x": 1}, None, "other.energy.site-a.m", reasons.BAD_SUBJECT),
        ({"timestamp": T_S, "site_id": "site-b", "x": 1}, None, SUBJ, reasons.SUBJECT_MISMATCH),
        ({"timestamp": T_S, "device_id": "meter-8", "x": 1}, None, SUBJ, reasons.SUBJECT_MISMATCH),
        ({"timestamp": T_S, "device_id": 7, "x": 1}, None, SUBJ, reasons.SUBJECT_MISMATCH),
        ({"site_id": "site-b", "timestamp": T_S, "readings": [{"name": "x", "value": 1}]}, None, SUBJ,
         reasons.SUBJECT_MISMATCH),
        ({"timestamp": NOW // NS + 301, "x": 1}, None, SUBJ, reasons.FUTURE_TIMESTAMP),
        ({"timestamp": T_S - 31 * 86400, "x": 1}, None, SUBJ, reasons.TOO_OLD),
        (42, None, SUBJ, reasons.BAD_PAYLOAD),
        ("text", None, SUBJ, reasons.BAD_PAYLOAD),
        ([1, 2], None, SUBJ, reasons.BAD_PAYLOAD),
        ({"timestamp": T_S, "readings": 5}, None, SUBJ, reasons.BAD_PAYLOAD),
        ({"timestamp": T_S, "pad": "x" * 2000}, None, SUBJ, reasons.TOO_LARGE),
        (gzip.compress(b" " * 5000 + b"{}", mtime=0), {"Content-Encoding": "gzip"}, SUBJ, reasons.TOO_LARGE),
    ],
)  # fmt: skip
def test_rejections(payload, headers, subject, reason):
    result = run(payload, headers, subject, Limits(max_bytes=1024))
    assert result.points == []
    assert result.readings == 0
    assert [r.reason for r in result.rejections][:1] == [reason]
    assert all(r.error for r in result.rejections)


def test_mismatch_message_names_both_sides():
    result = run({"timestamp": T_S, "device_id": "m-7", "x": 1}, subject="iot.energy.site-a.m-8")
    assert (
        result.rejections[0].error == "device 'm-7' in payload does not match subject device 'm-8'"
    )


def test_partial_message_keeps_valid_readings_and_indexes_rejects():
    result = run([{"timestamp": T_S, "a": 1}, {"timestamp": T_S, "a": "bad"}, {"a": 3}])
    assert points(result) == [("a", T, 1.0)]
    assert [(r.index, r.reason) for r in result.rejections] == [
        (1, reasons.NON_NUMERIC),
        (2, reasons.MISSING_TIMESTAMP),
    ]
    assert result.outcome == "partial"


def test_reading_is_rejected_whole():
    """One bad field rejects the reading: stored + rejected always equals readings sent."""
    result = run({"timestamp": T_S, "good": 1, "bad": "x"})
    assert result.points == [] and result.outcome == "dead_lettered"


def test_boundary_of_the_future_limit_is_inclusive():
    assert run({"timestamp": (NOW + 300 * NS) // NS, "x": 1}).rejections == []


@settings(max_examples=400, deadline=None)
@given(
    subject=st.one_of(
        st.text(max_size=40),
        st.builds(lambda a, b, c: f"iot.{a}.{b}.{c}", st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)),
    ),
    data=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
            lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
            max_leaves=12,
        ).map(lambda o: json.dumps(o).encode()),
    ),
    encoding=st.sampled_from(["", "gzip", "deflate", "zstd"]),
    ctype=st.sampled_from(["", "application/json", "application/msgpack", "image/png"]),
)  # fmt: skip
def test_any_bytes_end_stored_or_rejected_never_raise(subject, data, encoding, ctype):
    result = decode_message(
        subject, data, {"Content-Encoding": encoding, "Content-Type": ctype}, NOW
    )
    assert result.points or result.rejections  # nothing vanishes
    for m, s, dev, f, t, v in result.points:
        assert is_name(m) and is_name(s) and is_name(dev) and is_field(f)
        assert isinstance(t, int) and isinstance(v, float) and math.isfinite(v)
        assert NOW - Limits().max_age_ns <= t <= NOW + Limits().future_ns
    for r in result.rejections:
        assert r.reason in reasons.REASONS and r.error
