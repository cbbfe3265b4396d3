"""Real HTTP servers for tests: any ASGI app in uvicorn on a loopback port, in a thread.

A thread rather than a subprocess keeps start-up well under a second; tests that need a
separate process (stopping Redis under a service, the end-to-end pipe) use tests/procs.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn

from services.common.redis_server import free_port

T = TypeVar("T")


class ThreadedServer:
    """One uvicorn server in a daemon thread; ``stop`` then ``start`` again on the same port."""

    def __init__(
        self,
        app: Any,
        *,
        port: int | None = None,
        lifespan: str = "on",
        interface: str = "auto",
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.lifespan = lifespan
        self.interface = interface
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        """Serve, and for a topicwatch service wait until it consumes (or refused to)."""
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=self.lifespan,  # type: ignore[arg-type]
            access_log=False,
            interface=self.interface,  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        runtime = getattr(getattr(self.app, "state", None), "runtime", None)
        if runtime is not None:
            # In this process a refusal or a lost subscriber (a later test's FLUSHALL reaching
            # a server still shutting down) must not SIGTERM the test run: record it only.
            runtime.on_fatal = lambda _reason: None
            runtime.on_subscriber_lost = lambda _grace: None
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started or (
            runtime is not None and not (runtime.started or runtime.fatal)
        ):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            self._server = None
            self._thread = None


@contextmanager
def serving(app: Any, **options: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the block; yields its base URL."""
    server = ThreadedServer(app, **options).start()
    try:
        yield server.url
    finally:
        server.stop()


def wait_for(predicate: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll until ``predicate()`` is truthy and return it (a condition, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
