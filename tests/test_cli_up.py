"""`topicwatch up`: embedded Redis with AOF, three supervised services, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from services.common.http import wait_healthy
from services.common.redis_server import free_port
from tests.procs import ROOT

pytestmark = __import__("pytest").mark.e2e


def up_environment(tmp_path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Free ports for Redis and the services, and an environment that uses them (and nothing
    else of the caller's TOPICWATCH_* settings)."""
    ports = {name: free_port() for name in ("ingest", "classify", "notify", "redis")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICWATCH_")} | {
        "TOPICWATCH_DATA_DIR": str(tmp_path / "data"),
        "TOPICWATCH_EMBEDDED_REDIS_PORT": str(ports["redis"]),
        "TOPICWATCH_INGEST_PORT": str(ports["ingest"]),
        "TOPICWATCH_CLASSIFY_PORT": str(ports["classify"]),
        "TOPICWATCH_NOTIFY_PORT": str(ports["notify"]),
    }
    return ports, env


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_runs_supervises_and_stops_everything(tmp_path: Path) -> None:
    ports, env = up_environment(tmp_path)
    env["TOPICWATCH_READ_BLOCK_MS"] = "50"
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for name in ("ingest", "classify", "notify"):
            wait_healthy(f"http://127.0.0.1:{ports[name]}")
        log.seek(0)
        printed = log.read()
        for name in ("ingest", "classify", "notify"):
            assert f"http://127.0.0.1:{ports[name]}" in printed
        assert (tmp_path / "data" / "redis").is_dir()

        client = redis.Redis(port=ports["redis"])
        assert client.config_get("appendonly")["appendonly"] in ("yes", b"yes")

        # Redis loses everything (as after a restart without persistence): the consumer groups
        # are gone, the services exit on NOGROUP, and the supervisor brings them back.
        client.flushall()
        time.sleep(3)
        for name in ("ingest", "classify", "notify"):
            wait_healthy(f"http://127.0.0.1:{ports[name]}", timeout=60)
        r = httpx.post(
            f"http://127.0.0.1:{ports['ingest']}/v1/articles",
            json={"title": "After the wipe", "body": "Still flowing."},
        )
        assert r.status_code == 202
        deadline = time.monotonic() + 60
        while client.xlen("topicwatch:articles:classified") < 1:
            assert time.monotonic() < deadline, "pipeline did not recover after the wipe"
            time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(40)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    for port in ports.values():
        assert not port_open(port), f"port {port} still open after stop:\n{output}"


def test_up_stops_everything_on_a_hangup(tmp_path: Path) -> None:
    """SIGHUP (a closed terminal) used to kill `up` alone, leaving Redis and the services up."""
    ports, env = up_environment(tmp_path)
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        for name in ("ingest", "classify", "notify"):
            wait_healthy(f"http://127.0.0.1:{ports[name]}")
        up.send_signal(signal.SIGHUP)
        code = up.wait(40)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(40)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    for port in ports.values():
        assert not port_open(port), f"port {port} still open after SIGHUP:\n{output}"
