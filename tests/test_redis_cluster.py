"""The local cluster the cluster-mode tests run on: real server processes joined by the
server's own CLI (``--cluster create``), whose masters really split the keyspace, and whose
replicas really take over when a master is SIGKILLed."""

from __future__ import annotations

import socket
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


def test_a_killed_master_is_replaced_by_its_replica(replicated_cluster: LocalCluster) -> None:
    cluster = replicated_cluster
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
    # Started again (as a supervisor would), the old master rejoins as a replica.
    cluster.restart(master)
    assert [node.port for node in cluster.replicas_of(promoted)] == [master.port]


def test_a_cluster_on_fixed_ports_starts_again_as_it_was(tmp_path: Path, redis_binary: str) -> None:
    """What `topicwatch up --cluster` relies on: stopped and started on the same ports and
    data, the nodes find each other from their nodes.conf (no second `--cluster create`) and
    the append-only files still hold the data."""
    base = next(
        b
        for b in range(32000, 40000, 89)
        if all(_free(p) for p in (*range(b, b + 3), *range(b + 10000, b + 10003)))
    )

    def cluster() -> LocalCluster:
        return LocalCluster(
            data_dir=tmp_path,
            appendonly=True,
            binary=redis_binary,
            ports=[base, base + 1, base + 2],
        )

    with cluster() as first:
        client = RedisCluster(host="127.0.0.1", port=base)
        client.set("kept", "yes")
        client.close()
        ids = first.describe()
    with cluster() as again:
        client = RedisCluster(host="127.0.0.1", port=base + 1)
        try:
            assert client.get("kept") == b"yes"
        finally:
            client.close()
        # The same three node ids: the cluster was not created anew.
        assert sorted(line.split()[0] for line in again.describe().splitlines()) == sorted(
            line.split()[0] for line in ids.splitlines()
        )


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
