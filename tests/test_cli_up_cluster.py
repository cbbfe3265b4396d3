"""`topicwatch up --cluster`: an embedded 3-master Valkey Cluster (a replica each) and the
services in cluster mode with 3 partitions; an article goes through; SIGTERM stops it all.
(That a second start finds the same cluster and its data is tests/test_redis_cluster.py's.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from redis.cluster import RedisCluster

from services.common.http import wait_healthy
from services.common.redis_server import free_port
from services.common.streams import StreamNames
from tests.procs import ROOT

pytestmark = __import__("pytest").mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_block(count: int) -> int:
    """A base port with ``count`` free ports from it, and their bus ports 10,000 above."""
    for base in range(21000, 31000, 97):
        wanted = [base + i for i in range(count)] + [base + 10000 + i for i in range(count)]
        if not any(port_open(p) for p in wanted):
            return base
    raise RuntimeError("no free block of ports")


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--cluster"],
        env=env,
        cwd=ROOT,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(up: subprocess.Popen[str], log: Path) -> str:
    up.send_signal(signal.SIGTERM)
    code = up.wait(60)
    output = log.read_text()
    assert code == 0, output
    return output


def test_up_cluster_runs_the_pipe_and_stops_everything(tmp_path: Path) -> None:
    base = free_block(6)
    ports = {name: free_port() for name in ("ingest", "classify", "notify")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICWATCH_")} | {
        "TOPICWATCH_DATA_DIR": str(tmp_path / "data"),
        "TOPICWATCH_EMBEDDED_REDIS_PORT": str(base),
        "TOPICWATCH_INGEST_PORT": str(ports["ingest"]),
        "TOPICWATCH_CLASSIFY_PORT": str(ports["classify"]),
        "TOPICWATCH_NOTIFY_PORT": str(ports["notify"]),
        "TOPICWATCH_READ_BLOCK_MS": "50",
    }
    log = tmp_path / "up.log"
    names = StreamNames(partitions=3, tagged=True)
    up = start_up(env, log)
    try:
        for name in ("ingest", "classify", "notify"):
            wait_healthy(f"http://127.0.0.1:{ports[name]}", timeout=120)
        assert f"ports {base}-{base + 5}" in log.read_text()
        r = httpx.post(
            f"http://127.0.0.1:{ports['ingest']}/v1/articles",
            json={"title": "On a cluster", "body": "Partitioned and replicated."},
        )
        assert r.status_code == 202
        client = RedisCluster(host="127.0.0.1", port=base)
        try:
            assert len(client.get_primaries()) == 3 and len(client.get_replicas()) == 3
            deadline = time.monotonic() + 60
            while sum(client.xlen(s) for s in names.classified_streams) < 1:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            client.close()
    finally:
        output = stop(up, log)
    for port in [*ports.values(), *range(base, base + 6)]:
        assert not port_open(port), f"port {port} still open after stop:\n{output}"
