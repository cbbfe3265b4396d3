"""One settings object for every topicwatch process.

Read once at process start (``load_settings``) and passed down explicitly: nothing in
topicwatch reads the environment anywhere else, so a test can build a ``Settings`` by hand
and get exactly the service it describes.  (tests/test_architecture.py checks that no other
module under services/ touches ``os.environ``/``os.getenv``.)

Two settings are needed before a ``Settings`` can exist, so :class:`EarlySettings` holds them
and reads only them: ``TOPICWATCH_PURE_PYTHON`` decides, when ``services.classify`` is first
imported, whether the mypyc-compiled modules or their sources are loaded; and
``TOPICWATCH_REDIS_SERVER`` names the redis-server binary a ``RedisServer`` starts when its
caller does not say (test fixtures, benchmarks).  ``Settings`` inherits both, so
``load_settings`` still validates and reports them like every other variable.

Not reading but handing on: ``topicwatch up`` (and the pipeline benchmark) give the service
processes they start a copy of the environment, with the Redis URL they chose added.
setup.py reads ``TOPICWATCH_PURE_PYTHON`` at build time too; it is not part of the program.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TOPICWATCH_"

#: Most partitions a deployment may configure (a Redis Cluster has 16,384 slots; far fewer
#: partitions than shards' worth of cores make no sense).
MAX_PARTITIONS = 1024

#: Standard Webhooks' suggested retry schedule (seconds after the previous attempt):
#: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
STANDARD_WEBHOOKS_SCHEDULE: tuple[float, ...] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class EarlySettings(BaseSettings):
    """The settings read before a ``Settings`` exists (see the module docstring); reading
    them does not depend on the other variables being valid."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    pure_python: bool = Field(
        default=False,
        description="Load the classifier's hot modules from source, not the compiled build.",
    )
    redis_server: str | None = Field(
        default=None,
        description="redis-server (or valkey-server) binary; default the bundled one, then PATH.",
    )


class Settings(EarlySettings):
    """Configuration of all three services and the CLI (env prefix ``TOPICWATCH_``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- Redis and topology -------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset means `topicwatch up` runs an embedded Redis. With "
        "`redis_cluster`, any node of the cluster; several, comma-separated, are tried in turn.",
    )
    redis_cluster: bool = Field(
        default=False,
        description="Talk to a Redis/Valkey Cluster (`TOPICWATCH_REDIS_URL` names any node): "
        "keys carry hash tags so that every script touches one slot (docs/architecture.md).",
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=MAX_PARTITIONS,
        description="Split each pipeline stream into this many partitions, each in its own hash "
        "slot, so that many shards share the work. Fixed for the life of the data: a service "
        "refuses to start when Redis holds another count.",
    )
    consume_partitions: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated partition numbers (0-based) this process consumes; empty "
        "means all. Lets a classify or notify replica take a share of the partitions (and "
        "notify the same share of subscription shards to deliver for); ingest reads the one "
        "public ingest stream and writes every partition, so it ignores this.",
    )
    redis_wait_replicas: int = Field(
        default=0,
        ge=0,
        description="Before a consumer acknowledges a batch, this many replicas of every master "
        "must have confirmed the writes (WAIT; services/common/replication.py); else the batch "
        "stays pending and runs again. 0: off. 1 in a cluster with replicas bounds what a "
        "failover can lose to nothing acknowledged (docs/scaling.md, 'Failover').",
    )
    redis_wait_timeout_ms: int = Field(
        default=1000,
        ge=1,
        description="How long a consumer waits for `redis_wait_replicas` confirmations.",
    )
    require_persistence: bool = Field(
        default=False,
        description="Refuse to start when Redis has neither AOF nor RDB snapshots on (else: a "
        "loud warning at every start).",
    )
    stream_prefix: str = Field(default="topicwatch", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    data_dir: Path = Field(default=Path(".topicwatch"), description="Embedded Redis data dir.")
    embedded_redis_port: int = Field(default=6390, ge=1, le=65535)

    # --- HTTP -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    ingest_port: int = Field(default=8001, ge=1, le=65535)
    classify_port: int = Field(default=8002, ge=1, le=65535)
    notify_port: int = Field(default=8003, ge=1, le=65535)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated; when set, write endpoints need a Bearer key.",
    )

    # --- Stream consumption -----------------------------------------------------------------
    read_batch: int = Field(default=200, ge=1, le=10_000, description="XREADGROUP COUNT.")
    read_block_ms: int = Field(default=200, ge=1, le=60_000)
    reclaim_idle_ms: int = Field(
        default=30_000, ge=100, description="Pending this long, an entry is claimed again."
    )
    stream_retention: int = Field(
        default=1000,
        ge=0,
        description="Keep about this many newest entries of each consumed stream (ingest, "
        "accepted, classified); older ones are trimmed only once every consumer group is done "
        "with them. 0 keeps all (unbounded: for debugging only).",
    )
    # Windows of the record streams (see docs/promises.md, "Bounds"): time and count, whichever
    # is reached first. Trimmed approximately (whole macro-nodes) every few seconds.
    alerts_window_days: float = Field(
        default=30.0, gt=0, description="Days of the `alerts` stream kept (alert history)."
    )
    alerts_window_max: int = Field(
        default=1_000_000, ge=1000, description="At most about this many `alerts` entries."
    )
    dead_letters_window_days: float = Field(
        default=30.0,
        gt=0,
        description="Days kept of `dead-letters`, `alerts:dead` and `articles:rejected`.",
    )
    dead_letters_window_max: int = Field(
        default=100_000,
        ge=1000,
        description="At most about this many entries in each of those three streams.",
    )
    dedup_window_days: float = Field(
        default=90.0,
        gt=0,
        description="How long ingest remembers an article's URL and content hash: a duplicate "
        "older than this is accepted again.",
    )
    feed_seen_days: float = Field(
        default=30.0,
        gt=0,
        description="A feed item no longer in its feed is forgotten after this many days.",
    )
    feed_seen_max: int = Field(
        default=10_000, ge=100, description="At most this many remembered items per feed."
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="Deliveries of one entry before it is dead-lettered."
    )

    # --- Ingest -----------------------------------------------------------------------------
    ingest_max_batch: int = Field(default=1000, ge=1)
    ingest_max_article_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest HTTP request body ingest reads."
    )
    feeds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    feed_poll_interval: float = Field(default=300.0, gt=0)
    allow_private_feeds: bool = Field(
        default=False, description="Allow feeds on loopback/private addresses (dev and tests)."
    )

    shutdown_grace: float = Field(
        default=15.0,
        gt=0,
        description=(
            "Seconds a service that must restart (its stream subscriber died) waits for a clean "
            "shutdown before it exits anyway."
        ),
    )

    # --- `topicwatch up`'s supervisor ---------------------------------------------------------
    restart_delay: float = Field(
        default=2.0, gt=0, description="Wait before restarting a service that died (doubles)."
    )
    restart_delay_max: float = Field(default=30.0, gt=0, description="Longest restart wait.")
    restart_healthy_after: float = Field(
        default=60.0,
        gt=0,
        description="A service up this many seconds is healthy: its restart wait starts over.",
    )

    # --- Classify ---------------------------------------------------------------------------
    taxonomy_path: Path | None = Field(
        default=None, description="Taxonomy file or folder; unset means the packaged default."
    )
    taxonomy_reload_interval: float = Field(default=2.0, gt=0)

    # --- Notify -----------------------------------------------------------------------------
    allow_private_webhooks: bool = False
    webhook_timeout: float = Field(default=10.0, gt=0)
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(STANDARD_WEBHOOKS_SCHEDULE)
    )
    webhook_retry_jitter: float = Field(default=0.1, ge=0, le=1)
    delivery_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A notify process owns a subscription's deliveries this long per claim "
        "(renewed as it sends); after a crash another process takes over once it expires. "
        "Keep it above webhook_timeout.",
    )
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "topicwatch@localhost"
    public_url: str = Field(
        default="", description="Base URL of the notify API, used in alert links."
    )
    read_token: SecretStr | None = Field(
        default=None,
        description="`topicwatch tail`'s default subscription read token (else an API key).",
    )

    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")

    @field_validator("api_keys", "feeds", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("consume_partitions", mode="before")
    @classmethod
    def _partition_list(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("consume_partitions")
    @classmethod
    def _distinct_partitions(cls, value: list[int]) -> list[int]:
        if any(p < 0 for p in value):
            raise ValueError("partition numbers start at 0")
        return sorted(set(value))

    @model_validator(mode="after")
    def _topology(self) -> Settings:
        beyond = [p for p in self.consume_partitions if p >= self.partitions]
        if beyond:
            raise ValueError(
                f"TOPICWATCH_CONSUME_PARTITIONS names {beyond}, beyond "
                f"TOPICWATCH_PARTITIONS={self.partitions} "
                f"(partitions are numbered 0..{self.partitions - 1})"
            )
        if self.redis_url and "," in self.redis_url and not self.redis_cluster:
            raise ValueError(
                "TOPICWATCH_REDIS_URL lists several URLs, which only TOPICWATCH_REDIS_CLUSTER=true "
                "uses (seed nodes of a cluster)"
            )
        return self

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        value = _split_csv(value)
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one delay")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must be >= 0 seconds")
        return value

    @property
    def embedded_redis_url(self) -> str:
        """Where `topicwatch up` runs its embedded Redis."""
        return f"redis://127.0.0.1:{self.embedded_redis_port}"

    @property
    def redis_urls(self) -> list[str]:
        """The configured Redis URLs (several only in cluster mode: seed nodes tried in turn)."""
        return _split_csv(self.redis_url or "")

    @property
    def own_partitions(self) -> list[int]:
        """The partitions this process consumes: ``consume_partitions``, or all of them."""
        return list(self.consume_partitions) or list(range(self.partitions))

    @property
    def partitioned(self) -> bool:
        """Whether keys carry hash tags: in cluster mode, or with more than one partition.
        A single node with one partition keeps the key names of before partitions existed."""
        return self.redis_cluster or self.partitions > 1

    def with_redis(self) -> Settings:
        """These settings, pointing at the embedded Redis when no Redis URL is configured:
        what a CLI command on the same machine as `topicwatch up` should talk to."""
        if self.redis_url:
            return self
        return self.model_copy(update={"redis_url": self.embedded_redis_url})

    def api_headers(self) -> dict[str, str]:
        """What a CLI client sends to a write endpoint: the first configured key, if any."""
        keys = sorted(self.api_key_values())
        return {"Authorization": f"Bearer {keys[0]}"} if keys else {}

    def api_key_values(self) -> frozenset[str]:
        """The configured API keys as plain strings (kept secret everywhere else)."""
        return frozenset(key.get_secret_value() for key in self.api_keys)


class SettingsError(SystemExit):
    """Raised at start when the environment holds a bad value; the message names the variable."""


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; a bad value stops the process with a message naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            if not error["loc"]:  # a rule across several variables: its message names them
                lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
                continue
            field = str(error["loc"][0])
            value = error.get("input")
            secret = any(word in field for word in ("key", "password", "token"))
            shown = "<hidden>" if secret else repr(value)
            lines.append(f"  {env_name(field)}={shown}: {error['msg']}")
        message = "topicwatch: invalid configuration:\n" + "\n".join(lines)
        print(message, file=sys.stderr)
        raise SettingsError(2) from None
