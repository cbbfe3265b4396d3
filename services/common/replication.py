"""Replicated before acknowledged: the ``WAIT`` barrier a consumer passes before it acks.

A Redis or Valkey master answers a write before its replicas have it (replication is
asynchronous). If the master is lost then and a replica takes over, the write is gone although
the client was told it succeeded. For a consumer that acknowledges its input on one master after
writing its output on another — ingest (the public input stream; the article's partition) and
notify (the partition; the subscriptions' shards) in cluster mode — that would lose the article
or the alert: the input acknowledged, the output never there. docs/scaling.md, "Failover", has
the whole account.

With ``TOPICWATCH_REDIS_WAIT_REPLICAS=n`` every consumer passes :class:`ReplicationBarrier`
before it acknowledges a batch: on each master, on one connection, a tiny write (a marker key
with a short TTL) and then ``WAIT n timeout``. ``WAIT`` covers the writes of its own connection
only, which is why the marker is written first; and since each master's replication is one
ordered stream, a replica that has the marker has everything the master applied before it —
the batch's outputs, written (and answered) earlier, included. If fewer than ``n`` replicas
confirm within ``TOPICWATCH_REDIS_WAIT_TIMEOUT_MS``, the batch is not acknowledged: it stays
pending and runs again (the handlers are idempotent). So while a shard has no replica the pipe
waits rather than risk a loss; a master that still has one is not slowed by more than a round
trip to its replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from services.common.connections import node_client

#: Seconds the marker keys live: each master has one, rewritten before every WAIT.
MARKER_TTL_MS = 60_000


class NotReplicated(Exception):
    """Fewer replicas than required confirmed the writes in time (the message says where)."""


def marker_tag(slots: set[int]) -> str:
    """A hash tag whose slot is one of ``slots`` (a master's): ``r<k>`` for the first such k."""
    for k in itertools.count():
        tag = f"r{k}"
        if key_slot(tag.encode()) in slots:
            return tag
    raise AssertionError("unreachable")


class ReplicationBarrier:
    """``await barrier.wait()``: every master's writes so far have reached ``replicas``
    replicas, or :class:`NotReplicated` (or a connection error) is raised."""

    def __init__(self, client: aioredis.Redis, prefix: str, replicas: int, timeout_ms: int) -> None:
        self.client = client
        self.prefix = prefix
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._nodes: dict[tuple[str, int], aioredis.Redis] = {}
        self._markers: dict[tuple[str, int], str] = {}

    async def wait(self) -> None:
        if not isinstance(self.client, RedisCluster):
            await self._wait_on(self.client, f"{self.prefix}:replicated", "the server")
            return
        cluster: Any = self.client
        await cluster.initialize()  # a no-op once the layout is known
        primaries = cluster.get_primaries()
        try:
            await asyncio.gather(
                *(
                    self._wait_on(
                        self._plain(node), self._marker(node), f"{node.host}:{node.port}"
                    )
                    for node in primaries
                )
            )
        except (aioredis.ResponseError, aioredis.ConnectionError, aioredis.TimeoutError):
            # A master gone or moved (a failover): re-read the layout now rather than wait
            # for another command to stumble on it; the batch stays pending meanwhile.
            self._markers.clear()
            with contextlib.suppress(aioredis.RedisError):
                await cluster.nodes_manager.initialize()
            raise

    async def _wait_on(self, client: aioredis.Redis, marker: str, where: str) -> None:
        async with client.pipeline(transaction=False) as pipe:  # one connection for both
            pipe.set(marker, secrets.token_hex(4), px=MARKER_TTL_MS)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            _ok, acked = await pipe.execute()
        if int(acked) < self.replicas:
            raise NotReplicated(
                f"{where}: {acked} of {self.replicas} replicas confirmed the writes within "
                f"{self.timeout_ms} ms"
            )

    def _plain(self, node: Any) -> aioredis.Redis:
        key = (node.host, node.port)
        if key not in self._nodes:
            self._nodes[key] = node_client(node)
        return self._nodes[key]

    def _marker(self, node: Any) -> str:
        key = (node.host, node.port)
        if key not in self._markers:
            cluster: Any = self.client
            slots = {
                slot
                for slot, nodes in cluster.nodes_manager.slots_cache.items()
                if nodes and (nodes[0].host, nodes[0].port) == key
            }
            if not slots:
                raise NotReplicated(f"{node.host}:{node.port} serves no slots (yet)")
            self._markers[key] = f"{self.prefix}:{{{marker_tag(slots)}}}:replicated"
        return self._markers[key]

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()
