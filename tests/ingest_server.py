"""The real ingest service (uvicorn on a loopback port, real Redis) inside the test process.

A thread rather than a subprocess keeps each test at well under a second of start-up; the
tests that need a process (stopping Redis under a running service) use tests/procs.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis as redis_sync

from services.common.settings import Settings
from services.common.streams import StreamNames
from services.ingest.app import create_app

from .servers import serving


@contextmanager
def running_ingest(settings: Settings, **overrides: Any) -> Iterator[str]:
    """Start ingest with ``settings`` (plus overrides); yields its base URL; stops it after."""
    if overrides:
        settings = Settings(**{**settings.model_dump(), **overrides})
    with serving(create_app(settings)) as url:
        yield url


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
