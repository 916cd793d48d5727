"""InfluxDB line protocol, built as strings in bulk (never one ``Point`` object per reading).

Two encoders, one grammar:

* :func:`encode_points` (:func:`series_prefixes` + :func:`point_lines`) -- the daemon's
  write path. Plain Python over the store's point tuples, so the daemon never imports
  polars. Each series' prefix (measurement + tags + field key) is escaped once and cached,
  so a reading costs one string concatenation: measured ~0.9M points/s, 6-7x
  ``influxdb_client.Point`` (bench/bench_influx.py).
* :func:`encode_frame` -- rollup frames and benchmarks. Polars string expressions build
  every line column-wise (polars is imported lazily, only on this path).

Escaping (InfluxDB line protocol reference): measurement -- comma and space; tag keys,
tag values and field keys -- comma, equals sign and space; string field values -- double
quote and backslash. Newlines cannot be escaped anywhere and are refused, as are empty
names and tag values (InfluxDB rejects an empty tag value) and a backslash right before
a separator or at the end of a name (the server would read it as an escape).
Floats are written in their shortest round-trip form (``repr``), integers with the ``i``
suffix, timestamps as integer nanoseconds, so a point reads back bit for bit.

Why complete field sets: InfluxDB *merges* the fields of a rewritten point (same
measurement, tag set and time). A rewrite that omits a field would leave the old value
behind, so every encoder here writes every field of a row, every time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Literal

_TIME, _VALUE = itemgetter(4), itemgetter(5)

if TYPE_CHECKING:
    import polars as pl

FieldKind = Literal["float", "int", "bool", "str"]

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_BAD_BACKSLASH = re.compile(r"\\(?=[ ,=]|$)")


class LineProtocolError(ValueError):
    """A name or value that line protocol cannot carry."""


def _check_name(value: str, what: str) -> None:
    if not value:
        raise LineProtocolError(f"{what} must not be empty")
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"{what} {value!r} contains a newline")
    if "\\" in value and _BAD_BACKSLASH.search(value):
        raise LineProtocolError(f"{what} {value!r} has a backslash before a separator")


def escape_measurement(name: str) -> str:
    _check_name(name, "measurement")
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} would read as a comment")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str, what: str = "tag key, tag value or field key") -> str:
    """Escape a tag key, tag value or field key."""
    _check_name(name, what)
    return name.translate(_KEY_ESCAPES)


def escape_string_value(value: str) -> str:
    """Quote a string field value."""
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"string field value {value!r} contains a newline")
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def series_prefix(measurement: str, tags: Mapping[str, str], field: str) -> str:
    """``measurement,tag=v,... field=`` with tags sorted by key (InfluxDB's own order, which
    spares the server a sort per line)."""
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(tags[k])}" for k in sorted(tags))
    return ",".join(parts) + " " + escape_key(field) + "="


def series_prefixes(
    points: Sequence[tuple[str, str, str, str, int, float]],
    *,
    measurement: str = "raw",
    cache: dict[tuple[str, str, str, str], str],
    check: Callable[[tuple[str, str, str, str]], None] | None = None,
) -> dict[tuple[str, str, str, str], str]:
    """Fill ``cache`` (series key -> escaped ``measurement,tags value=`` prefix) for every
    series of ``points`` not in it yet, calling ``check`` on each new key first. Runs
    before anything is sent, so a bad name refuses the whole batch."""
    try:
        for m, s, d, f, _, _ in points:
            cache[(m, s, d, f)]
    except KeyError:
        for m, s, d, f, _, _ in points:
            key = (m, s, d, f)
            if key not in cache:
                if check is not None:
                    check(key)
                tags = {"measurement": m, "site_id": s, "device_id": d, "field": f}
                cache[key] = series_prefix(measurement, tags, "value")
    return cache


def point_lines(
    points: Sequence[tuple[str, str, str, str, int, float]],
    prefixes: Mapping[tuple[str, str, str, str], str],
    seqs: Sequence[int] | int | None = None,
) -> list[str]:
    """One line per point from cached prefixes (see :func:`series_prefixes`): ``value`` and,
    when ``seqs`` is given (one integer per point, or one for all), an integer ``seq``
    field. Values are not checked here: see :func:`check_finite`."""
    if seqs is None:
        return [f"{prefixes[(m, s, d, f)]}{v!r} {t}" for m, s, d, f, t, v in points]
    if isinstance(seqs, int):
        tail = f",seq={int(seqs)}i "
        return [f"{prefixes[(m, s, d, f)]}{v!r}{tail}{t}" for m, s, d, f, t, v in points]
    return [
        f"{prefixes[(m, s, d, f)]}{v!r},seq={q}i {t}"
        for (m, s, d, f, t, v), q in zip(points, seqs, strict=True)
    ]


def raw_lines(
    prefixes: Iterable[str],
    points: Sequence[tuple[str, str, str, str, int, float]],
    seqs: Sequence[int] | int,
) -> list[str]:
    """:func:`point_lines` with each point's prefix already looked up (the caller holds
    the series keys): ``value`` and an integer ``seq`` field per point."""
    if isinstance(seqs, int):
        tail = f",seq={int(seqs)}i "
        rows = zip(prefixes, map(_VALUE, points), map(_TIME, points), strict=True)
        return [f"{p}{v!r}{tail}{t}" for p, v, t in rows]
    return [
        f"{p}{v!r},seq={q}i {t}"
        for p, v, q, t in zip(prefixes, map(_VALUE, points), seqs, map(_TIME, points), strict=True)
    ]


def check_finite(points: Sequence[tuple[str, str, str, str, int, float]]) -> None:
    """Refuse NaN and infinities before anything is sent. One C-speed ``sum`` first: any
    NaN or infinity makes it non-finite (a finite sum proves every value finite); only
    then (or when huge finite values overflow the sum) look value by value."""
    if math.isfinite(sum(map(itemgetter(5), points), 0.0)):
        return
    for p in points:
        if not math.isfinite(p[5]):
            raise LineProtocolError(f"InfluxDB cannot store the value {p[5]!r}")


def encode_points(
    points: Iterable[tuple[str, str, str, str, int, float]],
    *,
    measurement: str = "raw",
    cache: dict[tuple[str, str, str, str], str] | None = None,
    check: Callable[[tuple[str, str, str, str]], None] | None = None,
    seqs: Sequence[int] | int | None = None,
) -> str:
    """Store point tuples ``(measurement, site_id, device_id, field, time_ns, value)`` as
    lines of ``<measurement>,device_id=..,field=..,measurement=..,site_id=.. value=<v>
    [,seq=<n>i] <t>``.

    ``cache`` maps a series key to its escaped prefix; pass the same dict across calls
    (with the same ``measurement``). ``check`` validates a series key the first time it is
    seen, before anything is sent. Times must be ints: a float would not survive anyway.
    """
    prefixes: dict[tuple[str, str, str, str], str] = {} if cache is None else cache
    rows = points if isinstance(points, list | tuple) else list(points)
    if not rows:
        return ""
    series_prefixes(rows, measurement=measurement, cache=prefixes, check=check)
    check_finite(rows)
    return "\n".join(point_lines(rows, prefixes, seqs)) + "\n"


def encode_frame(
    frame: pl.DataFrame,
    measurement: str,
    *,
    tags: Sequence[str],
    fields: Mapping[str, FieldKind],
    time: str,
) -> str:
    """Encode every row of ``frame`` as one line, column-wise with polars expressions.

    Every field listed is written on every line (complete field sets); a null field value
    is an error rather than a silently partial point.
    """
    import polars as pl

    if frame.height == 0:
        return ""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    missing = [c for c in (*tags, *fields, time) if c not in frame.columns]
    if missing:
        raise LineProtocolError(f"frame lacks columns {missing}")
    nulls = [c for c in (*tags, *fields, time) if frame[c].null_count()]
    if nulls:
        raise LineProtocolError(f"null values in {nulls}: InfluxDB cannot store a null")
    _check_frame_names(frame, tags)

    def esc(col: str) -> pl.Expr:
        expr = pl.col(col).cast(pl.String)
        for ch in (",", "=", " "):
            expr = expr.str.replace_all(ch, "\\" + ch, literal=True)
        return expr

    parts: list[pl.Expr | str] = [escape_measurement(measurement)]
    for tag in sorted(tags):
        parts += ["," + escape_key(tag) + "=", esc(tag)]
    for i, (name, kind) in enumerate(fields.items()):
        parts += [(" " if i == 0 else ",") + escape_key(name) + "=", _field_expr(name, kind)]
    parts += [" ", pl.col(time).cast(pl.Int64).cast(pl.String)]
    exprs = [pl.lit(p) if isinstance(p, str) else p for p in parts]
    lines = frame.select(pl.concat_str(exprs).alias("line"))["line"]
    return "\n".join(lines.to_list()) + "\n"


def _field_expr(name: str, kind: FieldKind) -> pl.Expr:
    import polars as pl

    col = pl.col(name)
    if kind == "float":
        return col.cast(pl.Float64).cast(pl.String)
    if kind == "int":
        return col.cast(pl.Int64).cast(pl.String) + "i"
    if kind == "bool":
        return pl.when(col.cast(pl.Boolean)).then(pl.lit("true")).otherwise(pl.lit("false"))
    if kind == "str":
        escaped = col.cast(pl.String).str.replace_all("\\", "\\\\", literal=True)
        return '"' + escaped.str.replace_all('"', '\\"', literal=True) + '"'
    raise LineProtocolError(f"unknown field kind {kind!r}")


def _check_frame_names(frame: pl.DataFrame, tags: Sequence[str]) -> None:
    """Vectorised form of the name checks (empty, newline, dangling backslash)."""
    import polars as pl

    for tag in tags:
        col = frame[tag].cast(pl.String)
        bad = col.str.len_bytes().eq(0) | col.str.contains(r"[\r\n]|\\([ ,=]|$)")
        if bad.any():
            example = col.filter(bad)[0]
            raise LineProtocolError(f"tag {tag} value {example!r} cannot be written")


def check_float_column(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """Refuse NaN/inf before they reach the server (it would reject the whole batch)."""
    for name in columns:
        col = frame[name]
        if col.is_nan().any() or col.is_infinite().any():
            raise LineProtocolError(f"column {name} holds NaN or infinite values")
