"""Daemon settings: read from the environment once, overridden by flags, then frozen.

Secrets (passwords, tokens, credential paths' contents) never reach a log line: ``redacted()``
is the only form that is printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from telemetry_core.store import DEFAULT_STORE_URL, redact_url
from telemetry_core.subjects import DEFAULT_DURABLE


class SettingsError(ValueError):
    pass


INBOX_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


# Never printed: secrets, and the paths of files holding them (a path can name its owner,
# and an operator reading logs needs only to know that credentials are set).
SECRET_FIELDS = frozenset({"nats_password", "nats_token", "nats_creds", "tls_key"})

# field name -> environment variable
ENV = {
    "nats_url": "TELEMETRY_NATS_URL",
    "nats_user": "TELEMETRY_NATS_USER",
    "nats_password": "TELEMETRY_NATS_PASSWORD",
    "nats_token": "TELEMETRY_NATS_TOKEN",
    "nats_creds": "TELEMETRY_NATS_CREDS",
    "tls_ca": "TELEMETRY_NATS_TLS_CA",
    "tls_cert": "TELEMETRY_NATS_TLS_CERT",
    "tls_key": "TELEMETRY_NATS_TLS_KEY",
    "nats_inbox_prefix": "TELEMETRY_NATS_INBOX_PREFIX",
    "stream_replicas": "TELEMETRY_STREAM_REPLICAS",
    "store_url": "TELEMETRY_STORE_URL",
    "config_path": "TELEMETRY_CONFIG",
    "durable": "TELEMETRY_DURABLE",
    "batch_size": "TELEMETRY_BATCH_SIZE",
    "batch_max_delay_ms": "TELEMETRY_BATCH_MAX_DELAY_MS",
    "http_host": "TELEMETRY_HTTP_HOST",
    "http_port": "TELEMETRY_HTTP_PORT",
    "max_deliver": "TELEMETRY_MAX_DELIVER",
    "ack_wait_s": "TELEMETRY_ACK_WAIT_S",
    "max_payload_bytes": "TELEMETRY_MAX_PAYLOAD_BYTES",
    "shutdown_timeout_s": "TELEMETRY_SHUTDOWN_TIMEOUT_S",
    "log_level": "TELEMETRY_LOG_LEVEL",
}


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # Replies (pull deliveries, PubAcks, API answers) arrive on inbox subjects under this
    # prefix; a NATS user restricted to its own prefix (``telemetry nats-config``) cannot
    # read what JetStream delivers to anyone else. None: nats-py's ``_INBOX``.
    nats_inbox_prefix: str | None = None
    # Replicas of IOT and IOT_DLQ when the daemon creates them: 1 on one server, 3 on a
    # cluster (each message stored on three servers; one may fail). Existing streams are
    # verified against it (see ``jetstream.ensure_streams``).
    stream_replicas: int = 1
    store_url: str = DEFAULT_STORE_URL
    config_path: str | None = None
    durable: str = DEFAULT_DURABLE
    batch_size: int = 5000  # points per store commit
    batch_max_delay_ms: int = 100  # a batch is committed at the latest this long after it began
    http_host: str = "127.0.0.1"
    http_port: int = 9464  # /health and /metrics; 0 picks a free port, -1 disables
    max_deliver: int = 20  # deliveries before a message is dead-lettered as a poison message
    # JetStream redelivers a message not acknowledged within this long (set when the daemon
    # creates the durable consumer); batches waiting for the store say "in progress" every
    # third of it, so a store outage of any length causes no redelivery.
    ack_wait_s: float = 30.0
    max_payload_bytes: int = 1024 * 1024
    shutdown_timeout_s: float = 15.0
    log_level: str = "INFO"
    create_streams: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SettingsError("batch size must be at least 1")
        if self.batch_max_delay_ms < 1:
            raise SettingsError("batch max delay must be at least 1 ms")
        if not -1 <= self.http_port <= 65535:
            raise SettingsError(f"HTTP port {self.http_port} is out of range")
        if self.max_deliver < 2:
            raise SettingsError("max deliver must be at least 2")
        if not 1 <= self.ack_wait_s <= 3600:
            raise SettingsError("TELEMETRY_ACK_WAIT_S must be between 1 and 3600 seconds")
        if not 1 <= self.stream_replicas <= 5:
            raise SettingsError("TELEMETRY_STREAM_REPLICAS must be between 1 and 5")
        if self.nats_inbox_prefix is not None and not INBOX_PREFIX.fullmatch(
            self.nats_inbox_prefix
        ):
            raise SettingsError(
                f"TELEMETRY_NATS_INBOX_PREFIX={self.nats_inbox_prefix!r} is not a subject "
                "prefix (letters, digits, _ and -, tokens separated by dots, no wildcards)"
            )
        if self.nats_user and not self.nats_password:
            raise SettingsError("TELEMETRY_NATS_USER is set but TELEMETRY_NATS_PASSWORD is not")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("TLS client certificate and key must be given together")
        for name in ("nats_creds", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise SettingsError(f"{ENV[name]} file {path!r} does not exist")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(
                f"log level {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR"
            )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            if types[name] in ("int", int):
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{var}={raw!r} is not an integer") from None
            elif types[name] in ("float", float):
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise SettingsError(f"{var}={raw!r} is not a number") from None
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def nats_servers(self) -> list[str]:
        """``nats_url`` split: it may list several servers, comma-separated."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def redacted(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            elif f.name in ("nats_url", "store_url") and value:
                value = redact_url(value)
            out[f.name] = value
        return out


def stream_replicas_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``TELEMETRY_STREAM_REPLICAS`` alone, validated as the daemon does: for tools that may
    create the streams without the daemon's other settings (``telemetry simulate``), so a
    stream they create first has the replicas the daemons expect."""
    raw = (os.environ if environ is None else environ).get(ENV["stream_replicas"]) or "1"
    try:
        replicas = int(raw)
    except ValueError:
        raise SettingsError(f"TELEMETRY_STREAM_REPLICAS={raw!r} is not an integer") from None
    return Settings(stream_replicas=replicas).stream_replicas
