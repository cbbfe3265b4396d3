"""What topicwatch needs from its Redis server, declared once and checked at every start.

* **A server >= 7.0** (:data:`MIN_SERVER_VERSION`): Redis 7.0+, or Valkey (which reports
  ``redis_version:7.2.x``). Older servers lack what the consumers rely on: ``XINFO GROUPS``
  without ``lag`` and ``XAUTOCLAIM`` answering nil for deleted pending entries (which wedged
  the reclaimer on Redis 6.2). An older server is refused, naming what was found.
* **No eviction** (``maxmemory-policy noeviction``): under any other policy Redis may evict a
  whole stream, consumer groups and all, when memory runs short, which loses data silently. A
  full Redis must answer writes with an error instead; the services then retry.
* **Persistence** (AOF or RDB snapshots): without it a restart of Redis loses every stream.
  Off means a loud warning, or a refusal with ``TOPICWATCH_REQUIRE_PERSISTENCE=true``.

The evaluation is a pure function of ``INFO`` and ``CONFIG GET`` answers, so the embedded
server of ``topicwatch up`` (sync client) and each service (async client) share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.common.connections import is_cluster
from services.common.streams import as_text

#: The oldest server topicwatch runs on (Redis 7.0; every Valkey release reports 7.2+).
MIN_SERVER_VERSION: tuple[int, int] = (7, 0)

#: The only eviction policy that never drops a stream.
REQUIRED_EVICTION_POLICY = "noeviction"


class ServerRequirementError(RuntimeError):
    """The Redis server cannot be used: the message says what was found and what is needed."""


@dataclass(frozen=True)
class ServerReport:
    """What a start-up check found: fatal ``errors`` and ``warnings`` to log loudly."""

    product: str
    version: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise ServerRequirementError("; ".join(self.errors))


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def evaluate(
    info: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    *,
    require_persistence: bool = False,
) -> ServerReport:
    """Judge a server from its ``INFO`` (server, memory, persistence) and ``CONFIG GET save``.

    ``config`` is None when the server refuses CONFIG (managed services often do): RDB
    snapshots then cannot be seen, and only AOF counts.
    """
    compat = as_text(info.get("redis_version", "0"))
    if info.get("valkey_version"):
        product, version = "Valkey", as_text(info["valkey_version"])
    else:
        product, version = "Redis", compat
    errors: list[str] = []
    warnings: list[str] = []
    needed = ".".join(map(str, MIN_SERVER_VERSION))
    if _version_tuple(compat)[:2] < MIN_SERVER_VERSION:
        errors.append(
            f"the server is {product} {version}; topicwatch needs Redis {needed} or newer "
            "(or Valkey): upgrade it, or unset TOPICWATCH_REDIS_URL to use the bundled Valkey"
        )
    policy = as_text(info.get("maxmemory_policy", REQUIRED_EVICTION_POLICY))
    if policy != REQUIRED_EVICTION_POLICY:
        errors.append(
            f"maxmemory-policy is {policy}; topicwatch needs {REQUIRED_EVICTION_POLICY}, "
            "because any other policy lets Redis evict whole streams and consumer groups "
            f"(set `maxmemory-policy {REQUIRED_EVICTION_POLICY}` in the server's config)"
        )
    aof = str(info.get("aof_enabled", "0")) == "1"
    save = as_text((config or {}).get("save", "")).strip()
    if not aof and not save:
        seen = (
            "appendonly is no and save is empty"
            if config is not None
            else ("appendonly is no (and CONFIG is refused, so RDB snapshots cannot be checked)")
        )
        message = (
            f"Redis persistence is off ({seen}): a restart of the server loses every stream "
            "and subscription; turn on `appendonly yes`"
        )
        if require_persistence:
            errors.append(message + " (TOPICWATCH_REQUIRE_PERSISTENCE is set)")
        else:
            warnings.append(message + " (TOPICWATCH_REQUIRE_PERSISTENCE=true makes this fatal)")
    return ServerReport(product=product, version=version, errors=errors, warnings=warnings)


async def check_server(client: aioredis.Redis, *, require_persistence: bool) -> ServerReport:
    """Ask a running server (async client) and judge it; see :func:`evaluate`.

    On a cluster every master is asked and judged (a replica promoted later is the same
    build and configuration, by the operator's care, not checked here); the report names the
    node of each finding."""
    if is_cluster(client):
        return await _check_cluster(client, require_persistence=require_persistence)
    info = await client.info()
    if str(info.get("cluster_enabled", "0")) == "1":
        report = evaluate(info, None, require_persistence=False)
        report.errors.append(
            "the server is a node of a Redis Cluster: set TOPICWATCH_REDIS_CLUSTER=true "
            "(keys of other nodes' slots would be refused with MOVED)"
        )
        return report
    try:
        config: Mapping[Any, Any] | None = await client.config_get("save")
    except ResponseError:
        config = None
    return evaluate(info, config, require_persistence=require_persistence)


def check_server_sync(client: redis.Redis, *, require_persistence: bool) -> ServerReport:
    """The same check with a synchronous client (``topicwatch up``'s embedded server)."""
    info = client.info()
    try:
        config: Mapping[Any, Any] | None = client.config_get("save")
    except ResponseError:
        config = None
    return evaluate(info, config, require_persistence=require_persistence)


async def _check_cluster(client: Any, *, require_persistence: bool) -> ServerReport:
    from redis.asyncio.cluster import RedisCluster

    infos = await client.info(target_nodes=RedisCluster.PRIMARIES)
    try:
        configs = await client.config_get("save", target_nodes=RedisCluster.PRIMARIES)
    except ResponseError:
        configs = {}
    reports = []
    for node, info in sorted(infos.items()):
        config = configs.get(node) if isinstance(configs, dict) else None
        reports.append((node, evaluate(info, config, require_persistence=require_persistence)))
    first = reports[0][1]
    errors = _by_nodes([(node, e) for node, report in reports for e in report.errors])
    warnings = _by_nodes([(node, w) for node, report in reports for w in report.warnings])
    return ServerReport(
        product=first.product, version=first.version, errors=errors, warnings=warnings
    )


def _by_nodes(findings: list[tuple[str, str]]) -> list[str]:
    """One line per finding, naming the masters it was found on (in first-seen order)."""
    nodes: dict[str, list[str]] = {}
    for node, text in findings:
        nodes.setdefault(text, []).append(node)
    return [f"{', '.join(where)}: {text}" for text, where in nodes.items()]
