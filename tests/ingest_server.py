"""The real ingest service (uvicorn on a loopback port, real Redis) inside the test process.

A thread rather than a subprocess keeps each test at well under a second of start-up; the
tests that need a process (stopping Redis under a running service) use tests/procs.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis as redis_sync
import uvicorn

from services.common.redis_server import free_port
from services.common.settings import Settings
from services.common.streams import StreamNames
from services.ingest.app import create_app


@contextmanager
def running_ingest(settings: Settings, **overrides: Any) -> Iterator[str]:
    """Start ingest with ``settings`` (plus overrides); yields its base URL; stops it after."""
    if overrides:
        settings = Settings(**{**settings.model_dump(), **overrides})
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ingest-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("ingest did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def stream_events(client: redis_sync.Redis, stream: str) -> list[dict[str, Any]]:
    """Every entry of a stream as decoded ``__data__`` JSON (with its entry id)."""
    out = []
    for entry_id, fields in client.xrange(stream):
        data = fields.get("__data__") if isinstance(next(iter(fields), ""), str) else None
        if data is None:
            data = fields[b"__data__"].decode()
        out.append({"_entry_id": entry_id, **json.loads(data)})
    return out


def names(settings: Settings) -> StreamNames:
    return StreamNames(settings.stream_prefix)
