"""The WAIT barrier consumers pass before they acknowledge (services/common/replication.py),
against real servers: a 3-master cluster with a replica each, and a single server.

A replica that has stopped reading (SIGSTOP: a real process that answers nothing, as a
lagging or cut-off replica would) makes the barrier fail, so nothing is acknowledged; once it
runs again the barrier passes; and what passed the barrier survives the master's SIGKILL.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from services.common.redis_cluster import LocalCluster
from services.common.redis_server import RedisServer
from services.common.replication import NotReplicated, ReplicationBarrier, marker_tag


def test_marker_tags_land_in_the_slots_asked_for() -> None:
    for slots in ({0}, set(range(5461, 10923)), {16383}):
        assert redis.crc.key_slot(marker_tag(slots).encode()) in slots


async def test_barrier_passes_with_replicas_and_fails_while_one_is_stopped(
    replicated_cluster: LocalCluster,
) -> None:
    client = AsyncRedisCluster.from_url(replicated_cluster.urls[0])
    barrier = ReplicationBarrier(client, "topicwatch", replicas=1, timeout_ms=300)
    try:
        for i in range(30):
            await client.xadd(f"topicwatch:{{p{i % 3}}}:s", {"n": str(i)})
        await barrier.wait()  # every master's replica confirms
        # Every master got its marker (a write on the connection WAIT was sent on).
        for master in replicated_cluster.current_masters():
            direct = redis.Redis(host=master.host, port=master.port)
            try:
                assert direct.keys("topicwatch:{r*}:replicated"), master.port
            finally:
                direct.close()
        [master, *_] = replicated_cluster.current_masters()
        [replica] = replicated_cluster.replicas_of(master)
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(NotReplicated, match=f"{master.port}: 0 of 1 replicas"):
                await barrier.wait()
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        await barrier.wait()
    finally:
        await barrier.aclose()
        await client.aclose()


async def test_what_passed_the_barrier_survives_the_masters_sigkill(
    replicated_cluster: LocalCluster,
) -> None:
    cluster = replicated_cluster
    stream = "topicwatch:{p0}:survives"
    client = AsyncRedisCluster.from_url(cluster.urls[0])
    barrier = ReplicationBarrier(client, "topicwatch", replicas=1, timeout_ms=2000)
    try:
        for i in range(500):
            await client.xadd(stream, {"n": str(i)})
        await barrier.wait()
        master = cluster.node_for_key(stream)
        promoted = cluster.kill_master(master)
        direct = redis.Redis(host=promoted.host, port=promoted.port)
        try:
            assert direct.xlen(stream) == 500
        finally:
            direct.close()
    finally:
        await barrier.aclose()
        await client.aclose()
    sync = RedisCluster(host=promoted.host, port=promoted.port)
    try:
        assert sync.xlen(stream) == 500  # and a cluster client finds it there
    finally:
        sync.close()
    cluster.restart(master)  # whole again for the next test


async def test_single_server_without_replica_fails_the_barrier(
    tmp_path: Path, redis_binary: str
) -> None:
    with RedisServer(data_dir=tmp_path, appendonly=False, binary=redis_binary) as server:
        client = aioredis.Redis.from_url(server.url)
        barrier = ReplicationBarrier(client, "topicwatch", replicas=1, timeout_ms=100)
        try:
            await client.set("k", "v")
            with pytest.raises(NotReplicated, match="the server: 0 of 1"):
                await barrier.wait()
            assert await client.exists("topicwatch:replicated")
        finally:
            await client.aclose()
