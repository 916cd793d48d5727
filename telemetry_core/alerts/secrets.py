"""Webhook secrets: resolved and validated once, at start, from the environment.

A missing or malformed secret is a configuration error naming the variable (never its
value), raised before the daemon consumes or a job delivers anything: a webhook that would
fail every delivery must stop the process at start, not fill the outbox with failures.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from telemetry_core.errors import ConfigError

if TYPE_CHECKING:
    from telemetry_core.config import Config

PREFIX = "whsec_"


class Secrets:
    """Signing keys per webhook name; its repr never shows a key."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = dict(keys)

    def key(self, webhook: str) -> bytes:
        return self._keys[webhook]

    def __contains__(self, webhook: object) -> bool:
        return webhook in self._keys

    def __repr__(self) -> str:
        return f"Secrets(webhooks={sorted(self._keys)})"

    __str__ = __repr__


def decode_secret(value: str, variable: str, where: str = "") -> bytes:
    """``whsec_<base64>`` -> key bytes; the error names ``variable``, never the value."""
    where = f"{where}: " if where else ""

    if not value.startswith(PREFIX):
        raise ConfigError(
            f"{where}environment variable {variable} must hold a secret of the form"
            " whsec_<base64> (it does not start with whsec_)"
        )
    text = value[len(PREFIX) :].strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError(
            f"{where}environment variable {variable} must hold a secret of the form"
            " whsec_<base64> (the part after whsec_ is not base64 or is empty)"
        )
    return key


def resolve_secrets(config: Config, environ: Mapping[str, str] | None = None) -> Secrets:
    """Every webhook's signing key from ``environ`` (default ``os.environ``).

    The daemon, the Dagster jobs and the CLI call this at start; it raises ConfigError for
    the first webhook whose variable is unset, empty or malformed."""
    env = os.environ if environ is None else environ
    keys: dict[str, bytes] = {}
    for hook in config.alerts.webhooks:
        value = env.get(hook.secret_env)
        if not value:
            raise ConfigError(
                f"[[alerts.webhooks]] {hook.name}: environment variable {hook.secret_env}"
                " is not set (it must hold the webhook secret, whsec_<base64>)"
            )
        keys[hook.name] = decode_secret(value, hook.secret_env, f"[[alerts.webhooks]] {hook.name}")
    return Secrets(keys)
