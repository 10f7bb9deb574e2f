"""Settings read once from the environment into one frozen object.

Every variable is validated at start-up; a bad value raises :class:`ConfigError` naming the
variable, so a process never starts half-configured. Defaults are the safe ones: loopback
addresses, TLS-only webhook targets, no dev shortcuts.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from jobwire.errors import ConfigError

SVIX_RETRY_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Every environment variable jobwire reads (the README documents each; deploy files may set
#: only these: tests/unit/test_settings_surface.py checks both).
ENV_VARS: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "KAFKA_FETCH_MAX_WAIT_MS",
    "JOBWIRE_API_KEYS", "JOBWIRE_DEV_API_KEY", "JOBWIRE_SECRET_KEY", "JOBWIRE_ALLOWED_TARGETS",
    "JOBWIRE_RETRY_SCHEDULE", "JOBWIRE_HOST", "JOBWIRE_PORT", "JOBWIRE_TOPIC_PREFIX", "JOBWIRE_RETENTION_DAYS",
    "JOBWIRE_EVENTS_PARTITIONS", "JOBWIRE_REPLICATION_FACTOR", "JOBWIRE_MIN_INSYNC_REPLICAS",
    "JOBWIRE_MAX_BODY_BYTES", "JOBWIRE_ENDPOINT_DISABLE_AFTER_S", "JOBWIRE_KAFKA_CACHE", "JOBWIRE_DEV",
    "JOBWIRE_LOG_LEVEL", "JOBWIRE_DISPATCH_MAX_DELIVERIES", "JOBWIRE_DISPATCH_MAX_BYTES", "JOBWIRE_DISPATCH_SENDERS",
    "JOBWIRE_ENDPOINT_IN_FLIGHT", "JOBWIRE_ENDPOINT_MAX_QUEUED", "JOBWIRE_DATA_DIR",
    "JOBWIRE_HTTP_MAX_CONNECTIONS", "JOBWIRE_HTTP_MAX_HEADER_BYTES", "JOBWIRE_HTTP_MAX_HEADERS",
    "JOBWIRE_HTTP_HEADER_TIMEOUT_S", "JOBWIRE_HTTP_BODY_TIMEOUT_S", "JOBWIRE_HTTP_KEEPALIVE_S",
    "JOBWIRE_LONG_POLLS_PER_TENANT", "JOBWIRE_STREAMS_PER_TENANT", "JOBWIRE_RATE_LIMIT_PER_S",
    "JOBWIRE_RATE_LIMIT_BURST", "JOBWIRE_JOB_DEADLINES", "JOBWIRE_SECRET_KEYS",
    "JOBWIRE_METRICS_TOKEN", "JOBWIRE_RESULT_REDIRECT_HOSTS", "JOBWIRE_RESENDS_PER_MIN",
    "JOBWIRE_ENDPOINTS_PER_TENANT", "JOBWIRE_SECRETS_PER_ENDPOINT", "JOBWIRE_UNFINISHED_JOBS_PER_TENANT",
    "JOBWIRE_PUBLIC_URL", "JOBWIRE_CANCEL_GRACE_S",
    "JOBWIRE_INSTANCE_ID", "JOBWIRE_GROUP_SESSION_TIMEOUT_S", "JOBWIRE_PROFILES", "JOBWIRE_PROFILE",
    "JOBWIRE_STORAGE", "JOBWIRE_S3_ENDPOINT_URL", "JOBWIRE_MAX_FILE_BYTES", "JOBWIRE_FILE_RETENTION_DAYS",
    "JOBWIRE_UPLOAD_TIMEOUT_S", "JOBWIRE_FILE_URL_TTL_S", "JOBWIRE_FILE_TYPES", "JOBWIRE_PROGRESS_WEBHOOK_INTERVAL_S",
    "JOBWIRE_EGRESS_PROXY", "JOBWIRE_TRACING",
)
#: Settings that hold secrets: each may instead be read from a file named by ``<name>_FILE``
#: (a mounted Kubernetes Secret or Docker secret), so it is in no process environment.
SECRET_FILES = {
    "JOBWIRE_API_KEYS": "JOBWIRE_API_KEYS_FILE", "JOBWIRE_SECRET_KEYS": "JOBWIRE_SECRET_KEYS_FILE",
    "JOBWIRE_SECRET_KEY": "JOBWIRE_SECRET_KEY_FILE", "JOBWIRE_METRICS_TOKEN": "JOBWIRE_METRICS_TOKEN_FILE",
    "KAFKA_SASL_PASSWORD": "KAFKA_SASL_PASSWORD_FILE",
}
ENV_VARS += tuple(SECRET_FILES.values())
#: Secrets that are comma-separated lists (in a file, one entry per line works too).
LIST_SECRETS = frozenset({"JOBWIRE_API_KEYS", "JOBWIRE_SECRET_KEYS"})
DEV_TENANT = "dev"
PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: What a tenant may be called: the tenant field of every event (schemas/event.json).
TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATA_DIR = Path.home() / ".local" / "state" / "jobwire"
#: Requests a second per API key on one replica when not in dev mode (the burst is twice this).
DEFAULT_RATE_LIMIT_PER_S = 200.0


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: How long the broker may hold an idle fetch. aiokafka keeps one fetch in flight per
    #: broker: a partition left out of the one parked there (it had records being read) waits
    #: for it to return, so this is the worst wait of a lone record. 500 ms is aiokafka's default.
    fetch_max_wait_ms: int = 20
    #: True when KAFKA_BOOTSTRAP_SERVERS was set: use that cluster, start no local broker.
    external: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = KafkaSettings()
    api_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secret_key: str | None = field(default=None, repr=False)
    allowed_targets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    retry_schedule_s: tuple[float, ...] = SVIX_RETRY_SCHEDULE_S
    host: str = "127.0.0.1"
    port: int = 8000
    topic_prefix: str = ""
    retention_days: float = 30.0
    events_partitions: int = 6
    #: None: from the cluster at topic creation (3 on three brokers or more, else their count).
    replication_factor: int | None = None
    #: None: 2 when the replication factor is 3 or more, else 1.
    min_insync_replicas: int | None = None
    max_body_bytes: int = 1 << 20
    #: An endpoint whose every attempt failed for this long is disabled (Svix's default: 5 days).
    endpoint_disable_after_s: float = 5 * 86400.0
    kafka_cache_dir: Path = Path.home() / ".cache" / "jobwire"
    dev: bool = False
    #: The dispatcher's memory bound: deliveries queued or in flight, and their bytes. Above
    #: it the dispatcher stops reading until half of it is worked off.
    dispatch_max_deliveries: int = 10_000
    dispatch_max_bytes: int = 64 << 20
    #: Senders: how many attempts may be in flight in all.
    dispatch_senders: int = 256
    #: Static membership of the dispatcher's consumer groups (Kafka's group.instance.id):
    #: a member restarted under the same id within the session timeout gets its partitions
    #: back without a rebalance of the group. None: dynamic membership.
    instance_id: str | None = None
    #: How long a silent group member keeps its partitions before the group moves them.
    group_session_timeout_s: float = 10.0
    #: Per endpoint: attempts in flight, and deliveries queued in memory (more are parked).
    endpoint_in_flight: int = 16
    endpoint_max_queued: int = 5000
    #: Where the API keeps its store (a cache of the log: deleting it means a rebuild).
    data_dir: Path = DEFAULT_DATA_DIR
    #: What the HTTP server bounds itself (api/server.py): open connections, the request head
    #: (request line and headers: bytes and count), the time a client may take to send a
    #: request head and then its body, and how long an idle keep-alive connection stays open.
    http_max_connections: int = 1000
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 100
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    http_keepalive_s: int = 5
    #: Per tenant: ``Prefer: wait`` long-polls and event streams open at once (429 above).
    long_polls_per_tenant: int = 100
    streams_per_tenant: int = 20
    #: Requests per second per API key (token bucket), and the burst; 0 means no rate limit.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 0
    #: Per tenant: retry, recover and test requests a minute (a token bucket holding a
    #: minute's worth); each one can put up to 200 records on webhooks.requests.
    resends_per_min: int = 60
    #: Quotas: webhook endpoints a tenant may have, and signing secrets an endpoint may hold
    #: at once (the current one and those rotated out but still in their grace period).
    endpoints_per_tenant: int = 50
    secrets_per_endpoint: int = 5
    #: Jobs a tenant may have pending or processing at once (a submit past it answers 429).
    unfinished_jobs_per_tenant: int = 100_000
    #: Where users reach the API (``https://jobs.example.com``): portal links are built on it,
    #: and the portal cookie is ``Secure`` when it is https. None: from each request.
    public_url: str | None = None
    #: How long a worker has to stop a running job once a cancel is asked; then it ends canceled
    #: whatever the worker does. None (``off``): a cancel waits for the worker.
    cancel_grace_s: float | None = 30.0
    #: Wire profiles mounted under their prefixes ("all": every one shipped), and the one
    #: also mounted at the root, for a deployment that speaks only that dialect.
    profiles: tuple[str, ...] = ("all",)
    root_profile: str | None = None
    #: Deadlines a submitted job gets unless its request sets them: (operation or "*", field,
    #: seconds). An operation's own entry wins over "*".
    job_deadlines: tuple[tuple[str, str, float], ...] = ()
    #: Hosts ``GET /v1/jobs/{id}/result`` may redirect to (https only; ``*.example.com`` for
    #: subdomains); any other result_url is answered as JSON.
    result_redirect_hosts: tuple[str, ...] = ()
    #: Where files live (uploads, job inputs, results): ``local`` (``data_dir/files``) or an
    #: S3-compatible bucket (``s3://bucket/prefix``; the AWS_* variables, and an endpoint URL
    #: for a store that is not AWS).
    storage: StorageSettings = field(default_factory=lambda: StorageSettings("local"))
    #: Largest file accepted (an upload, a job's input, a worker's result).
    max_file_bytes: int = 100 << 20
    #: How long a file is kept after its upload (a result: after its job finished).
    file_retention_s: float = 30 * 86400.0
    #: How long a job created to wait for its input file waits before it fails ``expired``.
    upload_timeout_s: float = 3600.0
    #: How long a signed URL (an upload URL, a result URL) stays valid.
    file_url_ttl_s: int = 3600
    #: An HTTP proxy every delivery goes through (CONNECT for https): static source addresses.
    egress_proxy: str | None = None
    #: task.progress webhooks: at most one per job per this many seconds (by the events' times).
    progress_webhook_interval_s: float = 5.0
    #: Media types a file may have (``type/subtype`` or ``type/*``); empty: any.
    file_types: tuple[str, ...] = ()

    def file_type_allowed(self, media_type: str) -> bool:
        bare = media_type.split(";", 1)[0].strip().lower()
        return not self.file_types or any(
            bare == allowed or (allowed.endswith("/*") and bare.startswith(allowed[:-1])) for allowed in self.file_types)
    #: Bearer token for the API's /metrics (every tenant's figures); None: open in dev mode only.
    metrics_token: str | None = field(default=None, repr=False)

    def deadlines_for(self, operation: str) -> dict[str, float]:
        """The default deadlines of ``operation``'s jobs (``timeout_s`` and friends)."""
        found = {name: seconds for op, name, seconds in self.job_deadlines if op == "*"}
        found.update({name: seconds for op, name, seconds in self.job_deadlines if op == operation})
        return found

    def keys_of(self, tenant: str) -> list[str]:
        """The tenant's API keys (for fingerprints that end its portal sessions when they change)."""
        return [key for owner, key in self.api_keys if owner == tenant]

    def tenant_for_key(self, key: str) -> str | None:
        """The tenant owning ``key``, compared in constant time against every configured key."""
        found = None
        for tenant, known in self.api_keys:
            if secrets.compare_digest(known.encode(), key.encode()):
                found = tenant
        return found


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _instance_id(env: Mapping[str, str]) -> str | None:
    raw = env.get("JOBWIRE_INSTANCE_ID", "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", raw):
        raise ConfigError("JOBWIRE_INSTANCE_ID", "may hold only letters, digits, '.', '_' and '-' (1 to 200)")
    return raw


def _auto_int(env: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    """An integer setting whose default, ``auto`` or unset, is worked out later (None)."""
    if env.get(name, "").strip().lower() in ("", "auto"):
        return None
    return _int(env, name, lo, lo, hi)


def _float(env: Mapping[str, str], name: str, default: float, lo: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not value >= lo:
        raise ConfigError(name, f"must be at least {lo}, got {raw!r}")
    return value


def _capped(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    # An unbounded float ("inf") would reach timers and token buckets as a value they cannot use.
    value = _float(env, name, default, lo)
    if not value <= hi:
        raise ConfigError(name, f"must be at most {hi:g}, got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(name, f"must be 1 or 0, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.upper() not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw.upper()


def _api_keys(env: Mapping[str, str], dev: bool) -> tuple[tuple[str, str], ...]:
    name = "JOBWIRE_API_KEYS"
    raw = env.get(name, "").strip()
    pairs: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        tenant, sep, key = item.partition(":")
        if not sep or not tenant or not key:
            # Never echo the value: it holds keys.
            raise ConfigError(name, "each entry must be tenant:key, separated by commas")
        if not TENANT_NAME.fullmatch(tenant):
            raise ConfigError(name, f"tenant {tenant[:64]!r} must be 1 to 64 letters, digits, '_', '.' or '-' "
                                    "(the tenant field of every event)")
        _check_key(name, f"the key of tenant {tenant!r} ", key)
        owner = owners.setdefault(key, tenant)
        if owner != tenant:
            raise ConfigError(name, f"one key is listed for tenants {owner!r} and {tenant!r}; "
                                    "each key must name one tenant")
        pairs.append((tenant, key))
    if not pairs and dev:
        pairs.append((DEV_TENANT, env.get("JOBWIRE_DEV_API_KEY") or "dev_" + secrets.token_urlsafe(18)))
    return tuple(pairs)


def _allowed_targets(env: Mapping[str, str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    name = "JOBWIRE_ALLOWED_TARGETS"
    nets = []
    for item in filter(None, (p.strip() for p in env.get(name, "").split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(name, f"{item!r} is not a CIDR such as 127.0.0.1/32") from None
    return tuple(nets)


MAX_RETRY_DELAY_S = 7 * 86400.0
MAX_SCHEDULE_LENGTH = 50


def _retry_schedule(env: Mapping[str, str]) -> tuple[float, ...]:
    """Delays before each attempt. A zero delay after the first means at once again (the
    requests topic serves it); each distinct positive delay gets a retry tier topic."""
    name = "JOBWIRE_RETRY_SCHEDULE"
    raw = env.get(name, "").strip()
    if not raw:
        return SVIX_RETRY_SCHEDULE_S
    try:
        delays = tuple(float(p) for p in raw.split(","))
    except ValueError:
        raise ConfigError(name, f"must be comma-separated seconds such as 0,5,300, got {raw!r}") from None
    if not all(0 <= d <= MAX_RETRY_DELAY_S for d in delays):  # also false for nan
        raise ConfigError(name, f"each delay must be from 0 to {MAX_RETRY_DELAY_S:.0f} seconds")
    if len(delays) > MAX_SCHEDULE_LENGTH:
        raise ConfigError(name, f"at most {MAX_SCHEDULE_LENGTH} attempts, got {len(delays)}")
    if any(0 < d < 0.1 for d in delays):
        raise ConfigError(name, "a positive delay must be at least 0.1 seconds (tier topics are named in ms)")
    return delays


def _cancel_grace(env: Mapping[str, str]) -> float | None:
    """Seconds (0 to a day), or ``off``: a cancel then waits for the worker however long."""
    if env.get("JOBWIRE_CANCEL_GRACE_S", "").strip().lower() == "off":
        return None
    return _capped(env, "JOBWIRE_CANCEL_GRACE_S", 30.0, 0.0, 86400.0)


def _public_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("JOBWIRE_PUBLIC_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("JOBWIRE_PUBLIC_URL", f"must be an origin such as https://jobs.example.com, got {raw!r}")
    return raw.rstrip("/")


def _kafka(env: Mapping[str, str]) -> KafkaSettings:
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    for hostport in filter(None, bootstrap.split(",")):
        host, _, port = hostport.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", f"{hostport!r} is not host:port")
    protocol = _choice(env, "KAFKA_SECURITY_PROTOCOL", SECURITY_PROTOCOLS, "PLAINTEXT")
    mechanism = _choice(env, "KAFKA_SASL_MECHANISM", SASL_MECHANISMS, None)
    assert protocol is not None
    if protocol.startswith("SASL"):
        mechanism = mechanism or "PLAIN"
        for var in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if not env.get(var):
                raise ConfigError(var, f"is required when KAFKA_SECURITY_PROTOCOL={protocol}")
    for var in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        path = env.get(var)
        if path and not Path(path).is_file():
            raise ConfigError(var, f"no such file: {path}")
    return KafkaSettings(
        bootstrap_servers=bootstrap or DEFAULT_BOOTSTRAP,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
        sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
        ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
        ssl_certfile=env.get("KAFKA_SSL_CERTFILE") or None,
        ssl_keyfile=env.get("KAFKA_SSL_KEYFILE") or None,
        fetch_max_wait_ms=_int(env, "KAFKA_FETCH_MAX_WAIT_MS", 20, 1, 10_000),
        external=bool(bootstrap),
    )


def _profile_name(env: Mapping[str, str], name: str, value: str) -> str:
    if value and not PROFILE_NAME.fullmatch(value):
        raise ConfigError(name, f"{value[:64]!r} is no profile name (lowercase letters, digits and '-')")
    return value


def _profiles(env: Mapping[str, str]) -> tuple[str, ...]:
    """``JOBWIRE_PROFILES``: profile names, comma-separated; ``all`` (the default) or ``none``."""
    raw = env.get("JOBWIRE_PROFILES", "all").strip()
    if raw in ("", "none"):
        return ()
    return tuple(_profile_name(env, "JOBWIRE_PROFILES", part.strip()) for part in raw.split(",") if part.strip())


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each secret named by a ``<name>_FILE`` read from that file: surrounding
    blank space dropped (``echo`` and editors leave a newline), and for a list, one entry per
    line or comma-separated."""
    read: dict[str, str] = {}
    for name, file_var in SECRET_FILES.items():
        path = env.get(file_var)
        if not path:
            continue
        if env.get(name):
            raise ConfigError(file_var, f"set {name} or {file_var}, not both")
        try:
            with open(path, encoding="utf-8") as secret_file:
                lines = [line.strip() for line in secret_file.read().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(file_var, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if len(lines) > 1 and name not in LIST_SECRETS:
            raise ConfigError(file_var, f"{path} holds {len(lines)} lines; {name} is one value")
        # A list may be written one entry per line, as secret files usually are.
        read[name] = ",".join(lines)
    return {**env, **read} if read else env


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise :class:`ConfigError` naming the first bad one."""
    env = _with_secret_files(os.environ if env is None else env)
    dev = _bool(env, "JOBWIRE_DEV")
    prefix = env.get("JOBWIRE_TOPIC_PREFIX", "")
    if prefix and not all(c.isalnum() or c in "._-" for c in prefix):
        raise ConfigError("JOBWIRE_TOPIC_PREFIX", "may hold only letters, digits, '.', '_' and '-'")
    # JOBWIRE_SECRET_KEYS (newest first; the rest only decrypt) or one JOBWIRE_SECRET_KEY.
    secret_key = env.get("JOBWIRE_SECRET_KEYS") or env.get("JOBWIRE_SECRET_KEY") or None
    secret_key_var = "JOBWIRE_SECRET_KEYS" if env.get("JOBWIRE_SECRET_KEYS") else "JOBWIRE_SECRET_KEY"
    if secret_key is None and dev:
        secret_key = secrets.token_urlsafe(32)
    if secret_key is not None:
        _check_secret_keys(secret_key_var, secret_key)
    cache = env.get("JOBWIRE_KAFKA_CACHE")
    data_dir = env.get("JOBWIRE_DATA_DIR")
    # A rate per API key (and per portal session's tenant) outside dev mode: one runaway client
    # loop must not take a replica from every other tenant. The bucket is per replica, so it
    # is a guard, not a tenant's quota (n replicas admit n times the rate); the default leaves
    # room for a busy integration (a batch submit is one request for 100 jobs). 0 turns it off.
    rate = _capped(env, "JOBWIRE_RATE_LIMIT_PER_S", 0.0 if dev else DEFAULT_RATE_LIMIT_PER_S, 0.0, 1e6)
    replication_factor = _auto_int(env, "JOBWIRE_REPLICATION_FACTOR", 1, 32)
    min_insync_replicas = _auto_int(env, "JOBWIRE_MIN_INSYNC_REPLICAS", 1, 32)
    if replication_factor and min_insync_replicas and min_insync_replicas > replication_factor:
        raise ConfigError("JOBWIRE_MIN_INSYNC_REPLICAS", f"{min_insync_replicas} is more than the replication "
                          f"factor {replication_factor}: every write would be refused")
    return Settings(
        kafka=_kafka(env),
        api_keys=_api_keys(env, dev),
        secret_key=secret_key,
        allowed_targets=_allowed_targets(env),
        retry_schedule_s=_retry_schedule(env),
        host=env.get("JOBWIRE_HOST", "127.0.0.1") or "127.0.0.1",
        port=_int(env, "JOBWIRE_PORT", 8000, 1, 65535),
        topic_prefix=prefix,
        retention_days=_float(env, "JOBWIRE_RETENTION_DAYS", 30.0, 0.0),
        events_partitions=_int(env, "JOBWIRE_EVENTS_PARTITIONS", 6, 1, 10_000),
        replication_factor=replication_factor,
        min_insync_replicas=min_insync_replicas,
        max_body_bytes=_int(env, "JOBWIRE_MAX_BODY_BYTES", 1 << 20, 1024, 1 << 30),
        endpoint_disable_after_s=_float(env, "JOBWIRE_ENDPOINT_DISABLE_AFTER_S", 5 * 86400.0, 1.0),
        kafka_cache_dir=Path(cache) if cache else Path.home() / ".cache" / "jobwire",
        dev=dev,
        dispatch_max_deliveries=_int(env, "JOBWIRE_DISPATCH_MAX_DELIVERIES", 10_000, 100, 10_000_000),
        dispatch_max_bytes=_int(env, "JOBWIRE_DISPATCH_MAX_BYTES", 64 << 20, 1 << 20, 1 << 40),
        dispatch_senders=_int(env, "JOBWIRE_DISPATCH_SENDERS", 256, 1, 10_000),
        instance_id=_instance_id(env),
        # Kafka brokers accept 6 s to 30 min by default (group.min/max.session.timeout.ms).
        group_session_timeout_s=_capped(env, "JOBWIRE_GROUP_SESSION_TIMEOUT_S", 10.0, 6.0, 1800.0),
        endpoint_in_flight=_int(env, "JOBWIRE_ENDPOINT_IN_FLIGHT", 16, 1, 1000),
        endpoint_max_queued=_int(env, "JOBWIRE_ENDPOINT_MAX_QUEUED", 5000, 1, 1_000_000),
        data_dir=Path(data_dir) if data_dir else DEFAULT_DATA_DIR,
        http_max_connections=_int(env, "JOBWIRE_HTTP_MAX_CONNECTIONS", 1000, 1, 1_000_000),
        http_max_header_bytes=_int(env, "JOBWIRE_HTTP_MAX_HEADER_BYTES", 16 * 1024, 1024, 1 << 20),
        http_max_headers=_int(env, "JOBWIRE_HTTP_MAX_HEADERS", 100, 8, 10_000),
        http_header_timeout_s=_capped(env, "JOBWIRE_HTTP_HEADER_TIMEOUT_S", 10.0, 0.1, 3600.0),
        http_body_timeout_s=_capped(env, "JOBWIRE_HTTP_BODY_TIMEOUT_S", 30.0, 0.1, 3600.0),
        http_keepalive_s=_int(env, "JOBWIRE_HTTP_KEEPALIVE_S", 5, 1, 3600),
        long_polls_per_tenant=_int(env, "JOBWIRE_LONG_POLLS_PER_TENANT", 100, 1, 100_000),
        streams_per_tenant=_int(env, "JOBWIRE_STREAMS_PER_TENANT", 20, 1, 100_000),
        rate_limit_per_s=rate,
        rate_limit_burst=_int(env, "JOBWIRE_RATE_LIMIT_BURST", max(1, math.ceil(2 * rate)), 1, 10_000_000) if rate else 0,
        resends_per_min=_int(env, "JOBWIRE_RESENDS_PER_MIN", 60, 1, 100_000),
        endpoints_per_tenant=_int(env, "JOBWIRE_ENDPOINTS_PER_TENANT", 50, 1, 100_000),
        secrets_per_endpoint=_int(env, "JOBWIRE_SECRETS_PER_ENDPOINT", 5, 2, 100),
        unfinished_jobs_per_tenant=_int(env, "JOBWIRE_UNFINISHED_JOBS_PER_TENANT", 100_000, 1, 100_000_000),
        public_url=_public_url(env),
        cancel_grace_s=_cancel_grace(env),
        profiles=_profiles(env),
        root_profile=_profile_name(env, "JOBWIRE_PROFILE", env.get("JOBWIRE_PROFILE", "").strip()) or None,
        job_deadlines=_job_deadlines(env),
        metrics_token=_metrics_token(env),
        result_redirect_hosts=_hosts(env, "JOBWIRE_RESULT_REDIRECT_HOSTS"),
        storage=_storage(env),
        # 5 GiB: the most one S3 PUT takes.
        max_file_bytes=_int(env, "JOBWIRE_MAX_FILE_BYTES", 100 << 20, 1, 5 << 30),
        file_retention_s=_float(env, "JOBWIRE_FILE_RETENTION_DAYS", 30.0, 1 / 1440) * 86400.0,
        # A day at most: an SDK worker keeps a waiting job's job.created uncommitted (a restart
        # finds the job again), so the wait must stay well inside the topic's retention.
        upload_timeout_s=_capped(env, "JOBWIRE_UPLOAD_TIMEOUT_S", 3600.0, 1.0, 86400.0),
        # An S3 presigned URL lives at most 7 days (SigV4).
        file_url_ttl_s=_int(env, "JOBWIRE_FILE_URL_TTL_S", 3600, 1, 7 * 86400),
        file_types=_file_types(env),
        egress_proxy=_egress_proxy(env),
        progress_webhook_interval_s=_capped(env, "JOBWIRE_PROGRESS_WEBHOOK_INTERVAL_S", 5.0, 0.0, 86400.0),
    )


def _egress_proxy(env: Mapping[str, str]) -> str | None:
    raw = env.get("JOBWIRE_EGRESS_PROXY", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        # Credentials in the URL would be logged by whoever prints settings: not taken here.
        raise ConfigError("JOBWIRE_EGRESS_PROXY", "an http://host:port URL (an HTTP proxy that takes CONNECT)")
    if parts.username or parts.password:
        raise ConfigError("JOBWIRE_EGRESS_PROXY", "no credentials in the proxy URL: allow the dispatcher's address "
                          "on the proxy instead")
    return raw.rstrip("/")


def _file_types(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("JOBWIRE_FILE_TYPES", "").strip()
    if raw in ("", "*", "*/*"):
        return ()
    types = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    for media_type in types:
        if not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)", media_type):
            raise ConfigError("JOBWIRE_FILE_TYPES", f"{media_type[:60]!r} is not a media type (type/subtype or type/*)")
    return types


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """``JOBWIRE_STORAGE``: ``local``, or ``s3://bucket/prefix`` (credentials and region from
    the usual AWS_* variables; ``JOBWIRE_S3_ENDPOINT_URL`` for an S3-compatible store)."""

    kind: str
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None


def _storage(env: Mapping[str, str]) -> StorageSettings:
    raw = env.get("JOBWIRE_STORAGE", "local").strip() or "local"
    endpoint = env.get("JOBWIRE_S3_ENDPOINT_URL", "").strip() or None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError("JOBWIRE_S3_ENDPOINT_URL", f"must be an http(s) URL, got {endpoint[:100]!r}")
    if raw == "local":
        return StorageSettings("local")
    parts = urlsplit(raw)
    bucket = parts.netloc
    if parts.scheme != "s3" or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or parts.query:
        raise ConfigError("JOBWIRE_STORAGE", f"'local' or s3://bucket/prefix (a valid bucket name), got {raw[:100]!r}")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    return StorageSettings("s3", bucket, parts.path.strip("/"), endpoint, region)


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in env.get(name, "").split(",") if h.strip())
    for host in hosts:
        bare = host.removeprefix("*.")
        if not bare or "*" in bare or "/" in bare or ":" in bare or " " in bare:
            raise ConfigError(name, f"{host!r} is not a host name (or *.domain)")
    return hosts


def _metrics_token(env: Mapping[str, str]) -> str | None:
    token = env.get("JOBWIRE_METRICS_TOKEN") or None
    if token is not None:
        _check_key("JOBWIRE_METRICS_TOKEN", "", token)
    return token


#: Words of the deploy files' placeholders: a key still holding one is no secret.
PLACEHOLDERS = ("replace_me", "replace-me", "changeme", "change_me", "change-me", "example")


#: Fewer distinct characters than this is no random key ("s" * 32, "abababab…").
MIN_DISTINCT_KEY_CHARACTERS = 8


def _check_secret_keys(name: str, value: str) -> None:
    """One key, or several comma-separated, newest first (the first seals, all open)."""
    keys = [key.strip() for key in value.split(",")]
    for position, key in enumerate(keys, start=1):
        _check_key(name, "" if len(keys) == 1 else f"key {position} ", key)


def _check_key(name: str, which: str, key: str) -> None:
    """A secret a person set: long enough, no placeholder, not a repeated pattern, and nothing
    a header could not carry (a key with a space or a line break would never match)."""
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ConfigError(name, f"{which}holds a space, a line break or another unprintable character")
    if len(key) < 16:
        raise ConfigError(name, f"{which}must be at least 16 characters")
    if any(word in key.lower() for word in PLACEHOLDERS):
        raise ConfigError(name, f"{which}is still a placeholder; set 32 or more random characters "
                                "(e.g. from `openssl rand -base64 32`)")
    if len(set(key)) < MIN_DISTINCT_KEY_CHARACTERS:
        raise ConfigError(name, f"{which}has too little entropy (under {MIN_DISTINCT_KEY_CHARACTERS} distinct "
                                "characters); use 32 or more random characters")


DEADLINE_FIELDS = ("timeout_s", "pending_timeout_s", "heartbeat_timeout_s")
#: The bounds schemas/data/job.created.json sets on each deadline.
DEADLINE_RANGE_S = (1.0, 365 * 86400.0)


def _job_deadlines(env: Mapping[str, str]) -> tuple[tuple[str, str, float], ...]:
    """``JOBWIRE_JOB_DEADLINES``: JSON, operation (or "*") -> {deadline field: seconds}, e.g.
    ``{"*": {"pending_timeout_s": 86400}, "convert": {"timeout_s": 3600, "heartbeat_timeout_s": 60}}``."""
    name = "JOBWIRE_JOB_DEADLINES"
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(name, f"must be a JSON object: {exc}") from None
    if not isinstance(table, dict):
        raise ConfigError(name, "must be a JSON object of operation -> {deadline: seconds}")
    lo, hi = DEADLINE_RANGE_S
    found = []
    for operation, deadlines in table.items():
        if not isinstance(deadlines, dict):
            raise ConfigError(name, f"{operation!r} must map to an object such as {{\"timeout_s\": 3600}}")
        for field_name, seconds in deadlines.items():
            if field_name not in DEADLINE_FIELDS:
                raise ConfigError(name, f"{operation!r}: {field_name!r} is none of {', '.join(DEADLINE_FIELDS)}")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not lo <= seconds <= hi:
                raise ConfigError(name, f"{operation!r}: {field_name} must be a number of seconds from "
                                        f"{lo:g} to {hi:g}, got {seconds!r}")
            found.append((str(operation), field_name, seconds))
    return tuple(found)
