"""Schemathesis hooks for ``st run`` against the API (loaded through ``SCHEMATHESIS_HOOKS``).

The one exclusion: OpenAPI describes each query parameter on its own, so a request may be
valid by the schema and still break a rule between parameters, which the server refuses
with a 400 naming the parameter (the rules are stated in the parameters' descriptions):

* ``end`` must be after ``start`` (``/v1/series``, ``/v1/top``);
* ``device`` and ``resolution=raw`` only at scope ``device``; ``site`` and ``work_hours``
  not at scope ``portfolio`` (``/v1/series``).

``filter_failure`` drops a "schema-valid request rejected" failure (ST202) only when the
request breaks one of these rules, judged here from the request alone, and the answer is a
400 naming a parameter of a broken rule. Every other failure of every check stands.
``tests/api/test_schemathesis.py`` tests this filter, and the rules themselves.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from telemetry_core.timeutil import TimestampError, now_ns, parse_time_arg

RANGED = ("/v1/series", "/v1/top")


def _text(query: dict[str, Any], name: str, default: str | None = None) -> str | None:
    value = query.get(name, default)
    return value if isinstance(value, str) else None


def broken_rules(path: str, query: dict[str, Any] | None) -> set[str]:
    """The parameters through which a request breaks a cross-parameter rule."""
    q = query or {}
    broken: set[str] = set()
    if path in RANGED:
        now = now_ns()
        start, end = _text(q, "start", "-1h"), _text(q, "end", "now")
        try:
            if (
                start is not None
                and end is not None
                and parse_time_arg(end, now=now) <= parse_time_arg(start, now=now)
            ):
                broken.add("end")
        except TimestampError:
            pass  # not a schema-valid time: no cross-parameter rule is involved
    if path == "/v1/series":
        scope = _text(q, "scope", "device")
        if q.get("device") is not None and scope != "device":
            broken.add("device")
        if q.get("resolution") == "raw" and scope != "device":
            broken.add("resolution")
        if q.get("site") is not None and scope == "portfolio":
            broken.add("site")
        if q.get("work_hours") is not None and scope == "portfolio":
            broken.add("work_hours")
    return broken


def refused_for_a_cross_parameter_rule(path: str, query: Any, status: int, body: Any) -> bool:
    return (
        status == 400
        and isinstance(body, dict)
        and body.get("parameter") in broken_rules(path, query if isinstance(query, dict) else {})
    )


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    if failure.code != "ST202":
        return True
    try:
        body = response.json()
    except ValueError:
        return True
    return not refused_for_a_cross_parameter_rule(
        case.operation.path, case.query, response.status_code, body
    )
