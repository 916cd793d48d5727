"""Store URLs, parsed in one place: which backend a URL names, and how to log it.

Every part that looks at ``TELEMETRY_STORE_URL`` (opening a store, the Dagster code
location's kind check, the alerts database, asset metadata) asks here, so a scheme is
accepted, refused or redacted the same way everywhere."""

from __future__ import annotations

import re

from telemetry_core.store.base import StoreError

DEFAULT_STORE_URL = "sqlite:///.state/telemetry.db"

#: scheme -> backend (the Dagster "kind" of the assets that live there)
SCHEMES = {
    "sqlite": "sqlite",
    "influxdb": "influxdb",
    "influxdb2": "influxdb",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
USAGE = (
    "use sqlite:///path.db, postgresql://user@host:5432/<database>, "
    "influxdb://host:8086/<database> or influxdb2://host:8086/<bucket>?org=<org>"
)

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]*)@")
_SECRET_PARAM = re.compile(r"(?P<key>[?&](?:token|password|pass|secret|auth)[^=&]*=)[^&,\s]*", re.I)


def redact_url(url: str) -> str:
    """The URL, or every URL of a comma-separated list, fit for a log line: passwords
    become ``***`` (the user name stays, it helps), a user part without a password is
    taken for a token (NATS reads ``nats://TOKEN@host`` so) and hidden whole, and query
    parameters that look like credentials are hidden too. Parsing is by pattern, not by
    ``urlsplit``, so a malformed URL is redacted as well, never echoed."""

    def userinfo(m: re.Match[str]) -> str:
        user, sep, _secret = m["userinfo"].partition(":")
        return f"{m['scheme']}{user}:***@" if sep else f"{m['scheme']}***@"

    return _SECRET_PARAM.sub(r"\g<key>***", _USERINFO.sub(userinfo, url))


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ("" when it has none)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def store_backend(url: str, *, setting: str = "TELEMETRY_STORE_URL") -> str:
    """``sqlite``, ``influxdb`` or ``postgresql`` for a store URL; a ``StoreError``
    naming the setting and the accepted forms for anything else."""
    backend = SCHEMES.get(scheme_of(url))
    if backend is None:
        raise StoreError(f"unsupported store URL {redact_url(url)!r} in {setting}: {USAGE}")
    return backend


def sqlite_path(url_or_path: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``, ``sqlite:////abs.db`` -> ``/abs.db``, a path as is."""
    if url_or_path[:9].lower() == "sqlite://":
        path = url_or_path[len("sqlite://") :]
        return path[1:] if path.startswith("/") else path
    return url_or_path
