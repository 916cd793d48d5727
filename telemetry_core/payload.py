"""Payload formats: the bytes of a message -> Python values, before any reading is looked at.

JSON by default, msgpack when ``Content-Type`` says so, gzip or deflate when
``Content-Encoding`` says so; the size limit holds for the raw and the inflated bytes.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from telemetry_core.reasons import TOO_LARGE, UNDECODABLE, Reject

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
JSON_TYPES = ("application/json", "text/json", "text/plain")

_json = msgspec.json.Decoder()
_msgpack = msgspec.msgpack.Decoder()


def _content_headers(headers: dict[str, str] | None) -> tuple[str, str]:
    """``Content-Encoding`` and ``Content-Type`` (names case-insensitive, values lowered,
    parameters dropped), in one pass over the headers."""
    if not headers:
        return "", ""
    encoding = headers.get("Content-Encoding")
    ctype = headers.get("Content-Type")
    if encoding is None or ctype is None:
        for key, val in headers.items():
            lowered = key.lower()
            if lowered == "content-encoding" and encoding is None:
                encoding = val
            elif lowered == "content-type" and ctype is None:
                ctype = val
    return _media(encoding), _media(ctype)


def _media(value: str | None) -> str:
    return value.split(";")[0].strip().lower() if value else ""


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return data
    wbits_options: tuple[int, ...]
    if encoding in ("gzip", "x-gzip"):
        wbits_options = (16 + zlib.MAX_WBITS,)
    elif encoding == "deflate":
        wbits_options = (zlib.MAX_WBITS, -zlib.MAX_WBITS)  # zlib-wrapped, then raw
    else:
        raise Reject(UNDECODABLE, f"unsupported Content-Encoding {encoding!r}")
    for wbits in wbits_options:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit:
            raise Reject(TOO_LARGE, f"payload inflates beyond the {limit}-byte limit")
        if not inflater.eof:
            raise Reject(UNDECODABLE, f"truncated {encoding} payload")
        return out
    raise Reject(UNDECODABLE, f"payload is not valid {encoding} data")


def decode_body(data: bytes, headers: dict[str, str] | None, max_bytes: int) -> Any:
    """The payload as Python values; ``Reject`` (undecodable, too large) otherwise."""
    if len(data) > max_bytes:
        raise Reject(TOO_LARGE, f"payload of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    encoding, ctype = _content_headers(headers)
    body = _inflate(data, encoding, max_bytes)
    try:
        if ctype in MSGPACK_TYPES:
            return _msgpack.decode(body)
        if ctype and ctype not in JSON_TYPES:
            raise Reject(UNDECODABLE, f"unsupported Content-Type {ctype!r}")
        try:
            return _json.decode(body)
        except msgspec.DecodeError:
            # Strict JSON has no NaN/Infinity, but many devices send them: parse leniently
            # so the reading is rejected precisely (non_finite), not as undecodable bytes.
            return _lenient_json(body)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        kind = "msgpack" if ctype in MSGPACK_TYPES else "JSON"
        raise Reject(UNDECODABLE, f"payload is not valid {kind}: {exc}") from None


def _lenient_json(body: bytes) -> Any:
    import json

    return json.loads(body)
