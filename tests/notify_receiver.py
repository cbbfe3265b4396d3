"""A real HTTP webhook receiver for notify tests: uvicorn on 127.0.0.1 in a thread.

It records every request (headers, body) and answers from a script of responses, so tests
can play a receiver that is fine, failing (500), throttling (429 + Retry-After), gone (410),
refusing (400), slow, held until the test releases it, or down (server stopped, connection
refused) and then up again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from services.common.redis_server import free_port
from services.common.settings import Settings
from services.notify.app import create_app
from tests.servers import ThreadedServer, serving


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    hold: threading.Event | None = None
    """Answer only once this is set (a slow receiver a test releases when it is ready)."""


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, then with ``default``."""
        with self._lock:
            self.script.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(Received(scope["method"], scope["path"], headers, body))
        reply = self._next_reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hold is not None:
            await asyncio.to_thread(reply.hold.wait, 30.0)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    def start(self) -> Receiver:
        self._server = ThreadedServer(
            self.app, port=self.port, lifespan="off", interface="asgi3"
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening: later requests see connection refused (a receiver that is down)."""
        if self._server is not None:
            self._server.stop(10)
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests arrived (tests fail on timeout, never on speed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    async def wait_for_async(self, count: int, within: float = 10.0) -> list[Received]:
        """``wait_for`` for async tests: yields to the event loop while waiting."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@contextmanager
def serve(settings: Settings, **kwargs: Any) -> Iterator[str]:
    """The whole notify app (consumer, worker, API) in uvicorn on 127.0.0.1; yields its URL."""
    with serving(create_app(settings, **kwargs)) as url:
        yield url
