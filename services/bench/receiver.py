"""A fast webhook receiver in its own process, for the pipeline benchmark.

It must never be the limit of what it measures, so it is an asyncio protocol on uvloop that
parses HTTP/1.1 with httptools (both come with ``uvicorn[standard]``) and answers 204 on the
same keep-alive connection, with no framework in between (an ASGI app under uvicorn costs
several times more CPU a request), and the harness reports its CPU next to every figure.
It keeps, per path family:

* ``/count/...``: POSTs counted, and distinct ``webhook-id`` headers (the alert id, the same
  on every retry) counted overall and per path, with the time the latest new one came (the
  fan-out: no body parsing). A redelivered webhook shows as a POST that is not distinct, a
  missing one as a path short of its count; the time the last distinct one came is the
  moment the fan-out finished, so the harness need not poll fast to time it;
* ``/track/...``: the counter, and for each article (by URL) the CLOCK_MONOTONIC time of its
  first and last webhook, so the harness can compute XADD -> webhook latency. CLOCK_MONOTONIC
  is one clock for every process on the machine, so times from two processes compare.

``GET /_counts`` answers the counters, ``GET /_paths`` the distinct ones per path, ``GET
/_stats`` the counters and arrival times; ``POST /_reset`` clears them.
Run it as ``python -m services.bench.receiver PORT``; :class:`ReceiverProcess` does that.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any, cast

import httptools
import httpx
import uvloop

from services.common.http import wait_healthy
from services.common.redis_server import free_port


class Recorder:
    """What the receiver keeps; :meth:`handle` answers one request (status, JSON body)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, int] = {"count": 0, "distinct": 0, "track": 0}
        self.count_at = 0.0
        self.ids: set[bytes] = set()
        self.per_path: dict[str, int] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def handle(
        self, path: str, body: bytes, now: float, webhook_id: bytes = b""
    ) -> tuple[int, bytes]:
        if path.startswith("/count"):
            self.counts["count"] += 1
            if webhook_id not in self.ids:
                self.ids.add(webhook_id)
                self.counts["distinct"] += 1
                self.per_path[path] = self.per_path.get(path, 0) + 1
                self.count_at = now
            return 204, b""
        if path.startswith("/track"):
            self.counts["track"] += 1
            data = json.loads(body)["data"]
            for alert in data["alerts"] if "alerts" in data else [data]:
                url = alert["article"]["url"]
                self.first.setdefault(url, now)
                self.last[url] = now
            return 204, b""
        if path == "/_counts":
            return 200, json.dumps({**self.counts, "count_at": self.count_at}).encode()
        if path == "/_paths":
            return 200, json.dumps(self.per_path).encode()
        if path == "/_stats":
            answer = {"counts": self.counts, "first": self.first, "last": self.last}
            return 200, json.dumps(answer).encode()
        if path == "/_reset":
            self.reset()
            return 204, b""
        if path == "/healthz":
            return 200, b"{}"
        return 404, b""


_REASONS = {200: b"OK", 204: b"No Content", 404: b"Not Found"}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, parsed by httptools (llhttp, the C parser uvicorn
    and Node use): a request costs a few microseconds of parsing and one write."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.webhook_id = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.body, self.webhook_id = b"", [], b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        now = time.monotonic()
        path = self.url.split(b"?", 1)[0].decode("ascii", "replace")
        status, body = self.recorder.handle(path, b"".join(self.body), now, self.webhook_id)
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"OK"))
        if status != 204:
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive:
            head += b"connection: close\r\n"
        assert self.transport is not None
        self.transport.write(head + b"\r\n" + body)
        if not keep_alive:
            self.transport.close()


async def serve(port: int) -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(recorder), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


class ReceiverProcess:
    """Starts the receiver as a child process on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "services.bench.receiver", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_healthy(self.url, timeout, alive=lambda: self.process.poll() is None)

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.client.get("/_stats").json()
        return answer

    def counts(self) -> dict[str, Any]:
        """``count`` and ``track`` (POSTs so far), ``distinct`` (webhook ids on /count) and
        ``count_at`` (when the latest distinct one came)."""
        counts: dict[str, Any] = self.client.get("/_counts").json()
        return counts

    def per_path(self) -> dict[str, int]:
        """Distinct webhooks per /count path (one path a fan-out subscription)."""
        paths: dict[str, int] = self.client.get("/_paths").json()
        return paths

    def reset(self) -> None:
        self.client.post("/_reset").raise_for_status()

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
