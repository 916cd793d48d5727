"""nats-server configuration for the platform: cluster nodes, and users with least privilege.

Why users with permissions (defence in depth): the daemon already rejects a payload that
names another site than its subject, but a device that can publish anywhere can still
write readings under another site's subject. Here the server refuses that publish in the
first place: each site's devices may publish only on ``iot.*.<site>.>``, and only the
daemon and the operator get any JetStream API at all.

Why a private inbox per user (``_INBOX_<user>``): replies (PubAcks, pull deliveries, API
answers) go to inbox subjects, and whoever may subscribe to ``_INBOX.>`` reads every
message JetStream delivers to the daemon, i.e. all raw data. Each user may subscribe only
below its own prefix, and the daemon and ``telemetry`` connect with
``TELEMETRY_NATS_INBOX_PREFIX`` set to it.

Why bcrypt: the server config then holds no secret; passwords live only in the per-user
credential files (mode 0600).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from telemetry_core.identifiers import check_name
from telemetry_core.subjects import DEFAULT_DURABLE, DLQ_PREFIX, DLQ_STREAM, STREAM

ACCOUNT = "TELEMETRY"
DAEMON_USER = "ingest"
OPERATOR_USER = "operator"
JS_API = "$JS.API"
LEASE_BUCKET = "telemetry_writers"  # ingest_daemon.lease.BUCKET (a test keeps them equal)


def device_user(site: str) -> str:
    return f"devices-{site}"


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class UserSpec:
    """One NATS user: what it may publish and subscribe to (everything else is denied)."""

    name: str
    role: str  # "daemon" | "operator" | "devices"
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    site: str | None = None

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.name)

    def describe(self) -> str:
        if self.role == "devices":
            return f"devices of site {self.site}: publish only on iot.*.{self.site}.>"
        if self.role == "daemon":
            return "ingest daemon: consume IOT, acknowledge, dead-letter to IOT_DLQ, lease"
        return "operator: telemetry dlq list/replay"


def daemon_user(durable: str = DEFAULT_DURABLE, name: str = DAEMON_USER) -> UserSpec:
    """The daemon: create/verify its two streams and its durable consumer, pull from it,
    acknowledge (ack, in-progress, nak, term all go to ``$JS.ACK``), publish dead letters
    with PubAcks. It cannot read any other consumer, nor delete or edit a stream."""
    check_name(durable, "durable")
    api = JS_API
    publish = (
        f"{api}.STREAM.INFO.{STREAM}",
        f"{api}.STREAM.INFO.{DLQ_STREAM}",
        f"{api}.STREAM.CREATE.{STREAM}",
        f"{api}.STREAM.CREATE.{DLQ_STREAM}",
        f"{api}.CONSUMER.INFO.{STREAM}.{durable}",
        f"{api}.STREAM.MSG.GET.{STREAM}",  # the oldest unacknowledged message's age
        f"{api}.CONSUMER.DURABLE.CREATE.{STREAM}.{durable}",  # nats-py's durable create
        f"{api}.CONSUMER.CREATE.{STREAM}.{durable}",  # the newer named form
        f"{api}.CONSUMER.CREATE.{STREAM}.{durable}.>",  # ... with its filter subject
        f"{api}.CONSUMER.MSG.NEXT.{STREAM}.{durable}",
        f"$JS.ACK.{STREAM}.{durable}.>",
        f"{DLQ_PREFIX}.>",
        # the InfluxDB writer lease (ingest_daemon/lease.py): its KV bucket and keys
        f"{api}.STREAM.INFO.KV_{LEASE_BUCKET}",
        f"{api}.STREAM.CREATE.KV_{LEASE_BUCKET}",
        f"{api}.STREAM.MSG.GET.KV_{LEASE_BUCKET}",
        f"{api}.DIRECT.GET.KV_{LEASE_BUCKET}.>",
        f"$KV.{LEASE_BUCKET}.>",
    )
    return UserSpec(name, "daemon", publish, (f"{inbox_prefix(name)}.>",))


def operator_user(name: str = OPERATOR_USER) -> UserSpec:
    """``telemetry dlq``: read IOT_DLQ with an ordered consumer (create it, answer its flow
    control), delete replayed letters, republish them to ``iot.>``. It cannot subscribe to
    ``iot.>`` nor touch stream IOT's consumers, so it never sees raw data in flight."""
    api = JS_API
    publish = (
        f"{api}.STREAM.INFO.{DLQ_STREAM}",
        f"{api}.CONSUMER.CREATE.{DLQ_STREAM}",
        f"{api}.CONSUMER.CREATE.{DLQ_STREAM}.>",
        f"{api}.CONSUMER.DELETE.{DLQ_STREAM}.>",
        f"{api}.STREAM.MSG.DELETE.{DLQ_STREAM}",
        f"$JS.FC.{DLQ_STREAM}.>",
        "iot.>",
    )
    return UserSpec(name, "operator", publish, (f"{inbox_prefix(name)}.>",))


def site_user(site: str) -> UserSpec:
    """A site's devices: publish (with PubAcks) on their site's subjects, nothing else."""
    check_name(site, "site")
    name = device_user(site)
    return UserSpec(name, "devices", (f"iot.*.{site}.>",), (f"{inbox_prefix(name)}.>",), site)


def plan_users(sites: Iterable[str], durable: str = DEFAULT_DURABLE) -> list[UserSpec]:
    """The daemon, the operator and one device user per site (sorted, duplicates dropped)."""
    return [daemon_user(durable), operator_user(), *(site_user(s) for s in sorted(set(sites)))]


def _q(value: str) -> str:
    """A quoted string in nats-server's config syntax (JSON escaping is a subset of it);
    quoting also keeps ``$`` in bcrypt hashes from reading as a variable."""
    return json.dumps(value)


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def auth_config(users: list[tuple[UserSpec, str]], *, header: str = "") -> str:
    """The include file: account ``TELEMETRY`` with JetStream and the given users, each with
    its password hash and its allow lists (anything not allowed is denied)."""
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    lines += ["accounts {", f"  {ACCOUNT} {{", "    jetstream: enabled", "    users: ["]
    for spec, password_hash in users:
        lines += [
            f"      # {spec.describe()}",
            f"      {{user: {_q(spec.name)}, password: {_q(password_hash)},",
            f"       permissions: {{publish: {{allow: {_list(spec.publish)}}},",
            f"                     subscribe: {{allow: {_list(spec.subscribe)}}}}}}}",
        ]
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class NodeSpec:
    """One nats-server of a (possibly one-node) deployment."""

    name: str
    client_port: int
    store_dir: Path
    host: str = "127.0.0.1"
    cluster_port: int | None = None  # None: not clustered
    http_port: int | None = None  # monitoring (/healthz, /jsz, /connz)
    mqtt_port: int | None = None  # MQTT listener (same users and permissions as NATS)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"


def node_config(
    node: NodeSpec,
    *,
    peers: Iterable[NodeSpec] = (),
    cluster_name: str = "telemetry",
    include: str | None = None,
) -> str:
    """A node's server config: JetStream (needs a unique ``server_name`` in a cluster), the
    cluster block with routes to every peer, and an optional ``include`` (the auth file)."""
    lines = [
        f"server_name: {_q(node.name)}",
        f"listen: {_q(f'{node.host}:{node.client_port}')}",
    ]
    if node.http_port is not None:
        lines.append(f"http: {_q(f'{node.host}:{node.http_port}')}")
    lines += ["jetstream {", f"  store_dir: {_q(str(node.store_dir))}", "}"]
    routes = [p.route for p in peers if p.name != node.name]
    if node.cluster_port is not None:
        lines += [
            "cluster {",
            f"  name: {_q(cluster_name)}",
            f"  listen: {_q(f'{node.host}:{node.cluster_port}')}",
            f"  routes: {_list(routes)}",
            "}",
        ]
    if node.mqtt_port is not None:  # needs JetStream and server_name, both set above
        lines += ["mqtt {", f"  listen: {_q(f'{node.host}:{node.mqtt_port}')}", "}"]
    if include:
        lines.append(f"include {_q(include)}")
    return "\n".join(lines) + "\n"


AUTH_FILE = "telemetry-auth.conf"
CREDENTIALS_DIR = "credentials"
BCRYPT_COST = 11  # nats-server's documented default; checked once per connection


def password_env(user: str) -> str:
    """The variable that may hold a user's password, e.g. TELEMETRY_NATS_PASSWORD_INGEST."""
    return "TELEMETRY_NATS_PASSWORD_" + "".join(c if c.isalnum() else "_" for c in user).upper()


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (shell-quoted values) of a credential file written here."""
    import shlex

    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            parts = shlex.split(value)
            out[key.strip()] = parts[0] if parts else ""
    return out


def credentials_text(spec: UserSpec, password: str, durable: str) -> str:
    import shlex

    lines = [
        f"# NATS user {spec.name}: {spec.describe()}",
        "# Written by `telemetry nats-config`. Secret: keep it readable by its user only.",
        "# Load with: set -a; . ./this-file; set +a",
        f"TELEMETRY_NATS_USER={shlex.quote(spec.name)}",
        f"TELEMETRY_NATS_PASSWORD={shlex.quote(password)}",
        f"TELEMETRY_NATS_INBOX_PREFIX={shlex.quote(spec.inbox_prefix)}",
    ]
    if spec.role == "daemon":  # its permissions name this durable consumer
        lines.append(f"TELEMETRY_DURABLE={shlex.quote(durable)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Written:
    auth_file: Path
    credentials: dict[str, Path]  # user -> file
    sources: dict[str, str]  # user -> "generated" | "environment" | "kept"


def write_auth(
    out_dir: Path,
    users: list[UserSpec],
    *,
    durable: str,
    environ: dict[str, str],
    rotate: bool = False,
) -> Written:
    """Write the server include file and one credential file per user.

    A password comes from ``TELEMETRY_NATS_PASSWORD_<USER>`` when set, else from the user's
    existing credential file (so re-running after adding a site does not lock every device
    out), else it is generated; ``rotate`` skips the existing files."""
    import os
    import secrets

    import bcrypt

    envs = [password_env(u.name) for u in users]
    clash = {e for e in envs if envs.count(e) > 1}
    if clash:
        raise ValueError(f"user names map to the same variable {sorted(clash)[0]}: rename a site")
    creds_dir = out_dir / CREDENTIALS_DIR
    creds_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(creds_dir, 0o700)
    hashed: list[tuple[UserSpec, str]] = []
    written: dict[str, Path] = {}
    sources: dict[str, str] = {}
    for spec in users:
        path = creds_dir / f"{spec.name}.env"
        password = environ.get(password_env(spec.name)) or ""
        source = "environment"
        if not password and path.exists() and not rotate:
            password, source = read_env_file(path).get("TELEMETRY_NATS_PASSWORD", ""), "kept"
        if not password:
            password, source = secrets.token_urlsafe(24), "generated"
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
        hashed.append((spec, digest))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credentials_text(spec, password, durable))
        os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
        written[spec.name], sources[spec.name] = path, source
    auth = out_dir / AUTH_FILE
    header = (
        "Generated by `telemetry nats-config`: include it in every server's config.\n"
        "Passwords are bcrypt hashes; the clear text is only in credentials/<user>.env."
    )
    auth.write_text(auth_config(hashed, header=header))
    return Written(auth, written, sources)
