"""The local cluster the cluster-mode tests run on: real server processes joined by the
server's own CLI (``--cluster create``), whose masters really split the keyspace, and whose
replicas really take over when a master is SIGKILLed."""

from __future__ import annotations

from pathlib import Path

import redis
from redis.cluster import RedisCluster

from services.common.redis_cluster import SLOTS, LocalCluster


def test_keys_land_on_different_masters(
    redis_cluster: LocalCluster, redis_cluster_url: str
) -> None:
    masters = redis_cluster.current_masters()
    assert len(masters) == 3
    owners = redis_cluster.slot_owners()
    assert len(owners) == SLOTS
    assert set(owners.values()) == {node.port for node in masters}

    client = RedisCluster.from_url(redis_cluster_url.split(",")[0])
    try:
        keys = [f"k{i}" for i in range(60)]
        for key in keys:
            client.set(key, key)
        homes = {key: redis_cluster.node_for_key(key).port for key in keys}
    finally:
        client.close()
    assert set(homes.values()) == {node.port for node in masters}
    # Ask each master directly (no cluster client): it holds exactly the keys mapped to it.
    for node in masters:
        direct = redis.Redis(host=node.host, port=node.port)
        try:
            held = {key.decode() for key in direct.keys("*")}
        finally:
            direct.close()
        assert held == {key for key, port in homes.items() if port == node.port}


def test_a_killed_master_is_replaced_by_its_replica(tmp_path: Path, redis_binary: str) -> None:
    with LocalCluster(data_dir=tmp_path, replicas_per_master=1, binary=redis_binary) as cluster:
        assert len(cluster.nodes) == 6
        client = RedisCluster.from_url(cluster.urls[0])
        try:
            client.set("survivor", "yes")
            master = cluster.node_for_key("survivor")
            # WAIT: the write reached the replica before the master dies (see docs/scaling.md)
            acked = client.execute_command(
                "WAIT", 1, 5000, target_nodes=client.get_node_from_key("survivor")
            )
            assert acked == 1
            replica = cluster.replicas_of(master)[0]
            promoted = cluster.kill_master(master)
            assert promoted.port == replica.port
            assert master.process is not None and master.process.returncode == -9
            assert {node.port for node in cluster.current_masters()} >= {promoted.port}
            assert client.get("survivor") == b"yes"  # the client follows the new topology
            client.set("after", "1")
        finally:
            client.close()
