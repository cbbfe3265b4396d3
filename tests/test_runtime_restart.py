"""A service whose stream subscriber died exits, even when its clean shutdown hangs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_sync

from services.common.http import wait_healthy
from services.common.redis_server import free_port

pytestmark = pytest.mark.streams

# A minimal service on the shared Runtime whose shutdown hook never returns: the stand-in
# for a shutdown that hangs after the consumer group vanished.
SERVICE = """
import asyncio, sys, uvicorn
from services.common.runtime import Runtime
from services.common.settings import load_settings

settings = load_settings()
runtime = Runtime(settings, "classify", description="restart test")

async def handle(entries):
    return [e.id for e in entries]

async def hang():
    await asyncio.Event().wait()

runtime.consume("topicwatch:test:stream", "restart-test", handle)
runtime.on_shutdown(hang)
uvicorn.run(runtime.http, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
"""


def test_a_service_that_cannot_shut_down_cleanly_exits_anyway(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TOPICWATCH_REDIS_URL": redis_url,
        "TOPICWATCH_DATA_DIR": str(tmp_path),
        "TOPICWATCH_READ_BLOCK_MS": "50",
        "TOPICWATCH_SHUTDOWN_GRACE": "1",
    }
    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        service = subprocess.Popen(
            [sys.executable, "-c", SERVICE, str(port)], env=env, stdout=log, stderr=log
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", alive=lambda: service.poll() is None)
            redis_sync.Redis.from_url(redis_url).flushall()  # the group vanishes (NOGROUP)
            code = service.wait(timeout=30)  # without the forced exit: hangs forever
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
    output = log_path.read_text()
    assert "a stream subscriber stopped" in output
    assert "clean shutdown did not finish within 1s; exiting now" in output
    assert code == 1
