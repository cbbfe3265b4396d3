"""The real stack for a harness: a private redis-server, service processes, a webhook receiver.

Nothing here is simulated: the server is a real ``redis-server`` (append-only on) in a
temporary directory on a free port — or, with ``cluster=``, a real cluster of them created by
the server's own CLI (:mod:`services.common.redis_cluster`) and the services in cluster mode —,
each service replica is ``topicwatch serve <service>`` in its own process on its own port, and
the receiver is an HTTP server on loopback. The harness kills processes with SIGKILL and
stops/starts the server process itself (in a cluster: SIGKILLs a master, and a replica takes
over).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from services.common.connections import sync_client
from services.common.http import wait_healthy
from services.common.redis_cluster import LocalCluster
from services.common.redis_server import RedisServer, free_port


class Receiver:
    """A webhook endpoint that answers 200 and records every ``webhook-id`` and alert id.

    A digest carries several alerts under one ``webhook-id``; each alert id in the body counts
    as delivered. ``redeliveries`` counts requests whose ``webhook-id`` had been seen before:
    at-least-once delivery allows them, and the receiver is expected to drop them by that id.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.webhook_ids: Counter[str] = Counter()
        self.alert_ids: set[str] = set()
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                webhook_id = self.headers.get("webhook-id", "")
                try:
                    data = json.loads(body)["data"]
                    alerts = data["alerts"] if "alerts" in data else [data]
                    ids = [str(alert["alert_id"]) for alert in alerts]
                except (ValueError, KeyError, TypeError):
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.requests += 1
                    receiver.webhook_ids[webhook_id] += 1
                    receiver.alert_ids.update(ids)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> set[str]:
        with self.lock:
            return set(self.alert_ids)

    def redeliveries(self) -> int:
        with self.lock:
            return sum(count - 1 for count in self.webhook_ids.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class ClusterSpec:
    """The cluster a harness runs on: masters, replicas per master, and the partitions
    (``TOPICWATCH_PARTITIONS``) the services split each stream into."""

    masters: int = 3
    replicas_per_master: int = 1
    partitions: int = 3


@dataclass
class Replica:
    """One ``topicwatch serve <service>`` process; killed and started again by the harness."""

    service: str
    index: int
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    exits: int = 0
    """Times the process ended by itself (not killed by the harness) and was started again."""
    _log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._log is None:
            self._log = (self.log_dir / f"{self.name}.log").open("ab")
        env = {**self.env, f"TOPICWATCH_{self.service.upper()}_PORT": str(self.port)}
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "services.cli", "serve", self.service],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_healthy(self, timeout: float = 120.0) -> None:
        wait_healthy(self.url, timeout, alive=self.alive)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no ack, no flush — a crash."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None and self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Stack:
    """A private Redis and the three services (with replicas), for one harness run."""

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: dict[str, int] | None = None,
        settings_env: dict[str, str] | None = None,
        cluster: ClusterSpec | None = None,
    ) -> None:
        self.workdir = workdir
        self.cluster_spec = cluster
        self.redis = RedisServer(data_dir=workdir / "redis", appendonly=True)
        self.cluster: LocalCluster | None = None
        if cluster is not None:
            self.cluster = LocalCluster(
                data_dir=workdir / "cluster",
                masters=cluster.masters,
                replicas_per_master=cluster.replicas_per_master,
                appendonly=True,
            )
        self.replica_counts = replicas or {"ingest": 1, "classify": 1, "notify": 1}
        self.settings_env = settings_env or {}
        self.replicas: list[Replica] = []
        self.redis_restarts = 0
        self.master_kills = 0

    @property
    def redis_url(self) -> str:
        """``TOPICWATCH_REDIS_URL``: the server's, or every cluster node's, comma-separated."""
        return self.cluster.url if self.cluster is not None else self.redis.url

    def client(self, **kwargs: Any) -> Any:
        """A blocking client of the stack's Redis (a cluster client in cluster mode)."""
        return sync_client(self.redis_url, cluster=self.cluster is not None, **kwargs)

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TOPICWATCH_")}
        env.update(
            {
                "TOPICWATCH_REDIS_URL": self.redis_url,
                "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on loopback
                "TOPICWATCH_LOG_LEVEL": "WARNING",
            }
        )
        if self.cluster_spec is not None:
            env["TOPICWATCH_REDIS_CLUSTER"] = "true"
            env["TOPICWATCH_PARTITIONS"] = str(self.cluster_spec.partitions)
        env.update(self.settings_env)
        return env

    def start(self) -> Stack:
        """Start Redis and every replica; on any failure stop what started and say why."""
        try:
            if self.cluster is not None:
                self.cluster.start()
            else:
                self.redis.start()
            env = self.env()
            for service, count in self.replica_counts.items():
                for index in range(1, count + 1):
                    replica = Replica(service, index, env, self.workdir)
                    replica.start()
                    self.replicas.append(replica)
            for replica in self.replicas:
                replica.wait_healthy()
        except (RuntimeError, TimeoutError) as exc:
            logs = self.logs_tail()
            self.stop()
            raise RuntimeError(f"the stack did not start: {exc}\n{logs}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def first(self, service: str) -> Replica:
        return next(r for r in self.replicas if r.service == service)

    def revive_exited(self) -> list[str]:
        """Start again every replica that ended by itself (a supervisor's job, counted)."""
        revived = []
        for replica in self.replicas:
            if replica.process is not None and not replica.alive():
                replica.exits += 1
                replica.start()
                revived.append(replica.name)
        return revived

    def kill_master(self, key: str) -> tuple[int, int]:
        """Cluster mode: SIGKILL the master that holds ``key`` now and wait until its replica
        has taken over (the cluster says ok). Returns (dead port, promoted port)."""
        if self.cluster is None:
            raise RuntimeError("kill_master needs a cluster (Stack(cluster=...))")
        master = self.cluster.node_for_key(key)
        promoted = self.cluster.kill_master(master)
        self.master_kills += 1
        return master.port, promoted.port

    def restart_redis(self, down_seconds: float = 1.0) -> None:
        """Stop the server process (SIGTERM: it finishes its append-only file) and start it
        again on the same port and data directory."""
        if self.cluster is not None:
            raise RuntimeError("in cluster mode the harness kills masters (kill_master)")
        self.redis.stop()
        time.sleep(down_seconds)
        self.redis.start(timeout=60.0)
        self.redis_restarts += 1

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()

    def logs_tail(self, chars: int = 3000) -> str:
        out = []
        for replica in self.replicas:
            path = self.workdir / f"{replica.name}.log"
            if path.exists():
                out.append(f"--- {replica.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)
