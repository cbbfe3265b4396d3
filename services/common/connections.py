"""The one place that opens Redis connections: redis-py clients and FastStream brokers.

Every service, CLI command, harness and benchmark asks here, so single-node and cluster mode
(``TOPICWATCH_REDIS_CLUSTER``) differ in this module only. In cluster mode the clients are
``redis.asyncio.RedisCluster`` / ``redis.RedisCluster`` and the broker FastStream's
``RedisClusterBroker``; they follow MOVED/ASK redirections and re-read the topology when a
node fails (a replica promoted), so the services need no restart after a failover.

The cluster clients are returned typed as the single-node ones: they offer the same command
methods (scripts, pipelines, ``MULTI`` within one slot, streams), and what they cannot do -
a command or script across slots - the key layout (streams.py) rules out by design.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from faststream.redis import RedisBroker, RedisClusterBroker
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    RedisClusterException,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
)

from services.common.settings import Settings

#: Seconds to wait for a TCP connection to Redis before the attempt counts as failed.
CONNECT_TIMEOUT = 5.0


class ClusterUnavailable(redis.exceptions.ConnectionError):
    """The cluster cannot serve a slot now: no node reachable, or a slot without a master
    (a failover under way). Raised as a ``ConnectionError`` so every service treats it as
    the Redis outage it is (503, left pending, retried) - redis-py raises these as
    ``RedisClusterException``, which is not a ``RedisError``."""


class _OutagesAsConnectionErrors(AsyncRedisCluster):
    """``RedisCluster`` whose transient topology errors are ``ClusterUnavailable``.

    Only the two that mean "not now" are translated; the rest of ``RedisClusterException``
    (keys of several slots in one command, say) is a bug and stays what it is.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (RedisClusterUnreachableError, SlotNotCoveredError) as exc:
            if not_a_cluster(exc):
                raise
            raise ClusterUnavailable(str(exc)) from exc


def _urls(url: str | None) -> list[str]:
    urls = [part.strip() for part in (url or "").split(",") if part.strip()]
    if not urls:
        raise ValueError("TOPICWATCH_REDIS_URL must be set")
    return urls


def _nodes(urls: list[str]) -> list[tuple[str, int]]:
    nodes = []
    for url in urls:
        parts = urlsplit(url)
        nodes.append((parts.hostname or "127.0.0.1", parts.port or 6379))
    return nodes


def redis_client(settings: Settings, *, url: str | None = None, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``settings`` (or ``url``, in the same mode)."""
    return async_client(url or settings.redis_url, cluster=settings.redis_cluster, **options)


def async_client(url: str | None, *, cluster: bool = False, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``url`` (several comma-separated seed nodes with ``cluster``)."""
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    urls = _urls(url)
    if not cluster:
        return aioredis.Redis.from_url(urls[0], **options)
    seeds = [AsyncClusterNode(host, port) for host, port in _nodes(urls[1:])]
    client = _OutagesAsConnectionErrors.from_url(urls[0], startup_nodes=seeds, **options)
    return cast(aioredis.Redis, client)


def sync_client(url: str | None, *, cluster: bool = False, **options: Any) -> redis.Redis:
    """A blocking client (CLI commands, harness, benchmarks), in the same two modes."""
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    urls = _urls(url)
    if not cluster:
        return redis.Redis.from_url(urls[0], **options)
    seeds = [ClusterNode(host, port) for host, port in _nodes(urls[1:])]
    client = RedisCluster.from_url(urls[0], startup_nodes=seeds, **options)
    return cast(redis.Redis, client)


def sync_redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client for ``settings``."""
    return sync_client(settings.redis_url, cluster=settings.redis_cluster, **options)


def broker(settings: Settings, **options: Any) -> RedisBroker:
    """The FastStream broker for ``settings``: ``RedisClusterBroker`` in cluster mode.

    Its stream subscribers read one stream each (``XREADGROUP`` of one key), so they work on
    a cluster unchanged; topicwatch's own reclaimer (XAUTOCLAIM) and scripts are single-key
    or single-slot too.
    """
    urls = _urls(settings.redis_url)
    if not settings.redis_cluster:
        return RedisBroker(urls[0], **options)
    return RedisClusterBroker(urls[0], startup_nodes=_nodes(urls[1:]), **options)


#: Connection settings a cluster client's nodes carry that a client of one node also takes.
_NODE_KWARGS = (
    "username", "password", "socket_timeout", "socket_connect_timeout", "ssl_keyfile",
    "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
)  # fmt: skip


def node_client(node: Any) -> aioredis.Redis:
    """A plain asyncio client of one node of a cluster client (an ``AsyncClusterNode``), with
    the cluster's credentials and TLS: for what must run on one node's connection, such as a
    write followed by ``WAIT`` (services/common/replication.py)."""
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k in _NODE_KWARGS and v}
    if "SSL" in getattr(node.connection_class, "__name__", ""):
        kwargs["ssl"] = True
    return aioredis.Redis(host=node.host, port=node.port, **kwargs)


def not_a_cluster(exc: BaseException) -> bool:
    """Whether ``exc`` says the server is not a cluster node (cluster mode on a single
    server: a configuration error, not an outage to wait out)."""
    return (
        isinstance(exc, RedisClusterException) and "cluster mode is not enabled" in str(exc).lower()
    )


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a cluster (some admin commands go to every master)."""
    return isinstance(client, AsyncRedisCluster | RedisCluster)
