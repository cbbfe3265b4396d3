"""Run a local Redis/Valkey Cluster: three masters (and a replica each, when asked) on loopback.

The tests, the harness and ``topicwatch up --cluster`` need a real cluster, built the way an
operator builds one: ``cluster-enabled`` server processes, joined and given their slots by the
server's own CLI (``valkey-cli --cluster create ... --cluster-replicas R --cluster-yes``). The
server binary is the one :func:`~services.common.redis_server.find_redis_server` picks (the
bundled Valkey 8.1 by default, Debian's ``redis-server`` 7.0 when named); the CLI is the one
beside it, so the two always speak the same version.

Each node's cluster bus gets its own free port (``cluster-port``) instead of the default
``port + 10000``, which can run past 65535 for an ephemeral port. The node timeout is short
(one second by default) so that a failover in a test takes about two seconds, not fifteen.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from services.common.redis_server import RedisServer, bundled_binary, find_redis_server, free_port
from services.common.streams import as_text

#: Every slot of a Redis Cluster; a cluster is whole when its masters cover all of them.
SLOTS = 16384


def find_cli(server_binary: str) -> str:
    """The CLI that goes with ``server_binary``: ``valkey-cli``/``redis-cli`` beside it, else the
    bundled ``valkey-cli``, else one on PATH."""
    here = Path(server_binary).parent
    for name in ("valkey-cli", "redis-cli"):
        if (here / name).exists():
            return str(here / name)
    bundled = bundled_binary("valkey-cli")
    if bundled is not None:
        return str(bundled)
    for name in ("valkey-cli", "redis-cli"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(f"no valkey-cli or redis-cli to go with {server_binary}")


@dataclass
class LocalCluster:
    """A cluster of real server processes on free loopback ports, in ``data_dir``.

    ``nodes`` keeps the processes in creation order: the first ``masters`` were created as
    masters, the rest as their replicas; after a failover :meth:`current_masters` says who
    leads now.
    """

    data_dir: Path
    masters: int = 3
    replicas_per_master: int = 0
    host: str = "127.0.0.1"
    appendonly: bool = False
    node_timeout_ms: int = 1000
    binary: str = field(default_factory=find_redis_server)
    ports: list[int] = field(default_factory=list)
    """Fixed ports, one per node (their bus ports are 10,000 above): a cluster that is
    stopped and started again on the same ``data_dir`` must keep them (``topicwatch up
    --cluster``). Empty: free ports, and a new cluster every start."""
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def cli(self) -> str:
        return find_cli(self.binary)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: ``TOPICWATCH_REDIS_URL`` in cluster mode (any
        node will do; the client tries them in turn and learns the rest from the cluster)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start the nodes, create the cluster with the CLI (unless every node already has its
        ``nodes.conf``: a cluster started again), and wait until it is whole."""
        count = self.masters * (1 + self.replicas_per_master)
        if self.ports and len(self.ports) != count:
            raise ValueError(f"{count} nodes need {count} ports, not {len(self.ports)}")
        existing = bool(self.ports) and all(
            (self.data_dir / f"node-{index}" / "nodes.conf").exists() for index in range(count)
        )
        try:
            for index in range(count):
                port = self.ports[index] if self.ports else 0
                bus = port + 10000 if port else free_port(self.host)
                node = RedisServer(
                    data_dir=self.data_dir / f"node-{index}",
                    port=port,
                    host=self.host,
                    appendonly=self.appendonly,
                    binary=self.binary,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        str(bus),
                        "--cluster-node-timeout",
                        str(self.node_timeout_ms),
                    ],
                )
                self.nodes.append(node)
                node.start()
            if not existing:
                self._create(timeout)
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, timeout: float) -> None:
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        args = [
            self.cli,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            str(self.replicas_per_master),
            "--cluster-yes",
        ]
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            args, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def client(self, node: RedisServer) -> redis.Redis:
        """A plain (non-cluster) client of one node, for CLUSTER/INFO/ROLE questions."""
        return redis.Redis(host=node.host, port=node.port, socket_timeout=2.0)

    def live_nodes(self) -> Iterator[RedisServer]:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                yield node

    def _node_ready(self, node: RedisServer) -> bool:
        client = self.client(node)
        try:
            if "cluster_state:ok" not in as_text(client.execute_command("CLUSTER", "INFO")):
                return False
            role = client.execute_command("ROLE")
            if role[0] in (b"slave", "slave"):
                # a replica counts once its link to the master is up and synced
                return role[3] in (b"connected", "connected")
            return True
        except redis.RedisError:
            return False
        finally:
            client.close()

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok``, the live masters cover all slots
        between them, and every live replica is connected to its master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = list(self.live_nodes())
            if all(self._node_ready(node) for node in live) and self._covered(live):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the cluster was not ok within {timeout}s:\n{self.describe()}")

    def _covered(self, live: list[RedisServer]) -> bool:
        owners = self.slot_owners(live)
        return len(owners) == SLOTS and all(
            port in {node.port for node in live} for port in owners.values()
        )

    def slot_owners(self, live: list[RedisServer] | None = None) -> dict[int, int]:
        """Slot -> port of the master serving it, as the first answering node sees it."""
        for node in live if live is not None else list(self.live_nodes()):
            client = self.client(node)
            try:
                owners: dict[int, int] = {}
                for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                    for slot in range(int(start), int(end) + 1):
                        owners[slot] = int(master[1])
                return owners
            except redis.RedisError:
                continue
            finally:
                client.close()
        return {}

    def current_masters(self) -> list[RedisServer]:
        """The live nodes that are masters now (after a failover, a promoted replica is one)."""
        masters = []
        for node in self.live_nodes():
            client = self.client(node)
            try:
                if client.execute_command("ROLE")[0] in (b"master", "master"):
                    masters.append(node)
            except redis.RedisError:
                pass
            finally:
                client.close()
        return masters

    def node_for_key(self, key: str | bytes) -> RedisServer:
        """The node (master) that holds ``key`` now."""
        live = list(self.live_nodes())
        client = self.client(live[0])
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            client.close()
        port = self.slot_owners(live)[slot]
        return next(node for node in self.nodes if node.port == port)

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The live replicas that follow ``master`` now."""
        out = []
        for node in self.live_nodes():
            client = self.client(node)
            try:
                role = client.execute_command("ROLE")
                if role[0] in (b"slave", "slave") and int(role[2]) == master.port:
                    out.append(node)
            except redis.RedisError:
                pass
            finally:
                client.close()
        return out

    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node: a crash, no flush, no goodbye to the cluster."""
        node.kill()

    def kill_master(self, master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """SIGKILL ``master`` and wait until one of its replicas serves all of its slots and
        the cluster is ok again; return the promoted node."""
        slots = {slot for slot, port in self.slot_owners().items() if port == master.port}
        if not slots:
            raise ValueError(f"port {master.port} serves no slots: not a master")
        self.kill(master)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owners = self.slot_owners()
            ports = {owners.get(slot) for slot in slots}
            if len(ports) == 1 and None not in ports and master.port not in ports:
                self.wait_ok(max(1.0, deadline - time.monotonic()))
                port = ports.pop()
                return next(node for node in self.nodes if node.port == port)
            time.sleep(0.1)
        raise TimeoutError(f"no replica took over from port {master.port}:\n{self.describe()}")

    def restart(self, node: RedisServer, timeout: float = 60.0) -> None:
        """Start a dead node again on its port and data directory: it reads its nodes.conf,
        finds that a replica took its slots, and rejoins as that replica (what a supervisor
        restarting the pod does); returns once the cluster is ok with it connected."""
        node.start(timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client = self.client(node)
            try:
                role = client.execute_command("ROLE")
                if role[0] in (b"slave", "slave") and role[3] in (b"connected", "connected"):
                    break
            except redis.RedisError:
                pass
            finally:
                client.close()
            time.sleep(0.1)
        else:
            raise TimeoutError(f"port {node.port} did not rejoin as a replica:\n{self.describe()}")
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def flushall(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.current_masters():
            client = self.client(node)
            try:
                client.flushall()
            finally:
                client.close()

    def describe(self) -> str:
        """``CLUSTER NODES`` from the first live node (for failure messages)."""
        for node in self.live_nodes():
            client = self.client(node)
            try:
                return as_text(client.execute_command("CLUSTER", "NODES"))
            except redis.RedisError as exc:
                return f"CLUSTER NODES failed on {node.port}: {exc}"
            finally:
                client.close()
        return "no live node"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
