"""A fast webhook receiver in its own process, for the pipeline benchmark.

It must never be the limit of what it measures, so it is an ASGI app of a few lines under
uvicorn with httptools and uvloop (keep-alive HTTP/1.1), answering 204 to every POST, and the
harness reports its CPU next to every figure. It keeps, per path family:

* ``/count/...``: a counter only (fan-out: no body parsing);
* ``/track/...``: the counter, and for each article (by URL) the CLOCK_MONOTONIC time of its
  first and last webhook, so the harness can compute XADD -> webhook latency. CLOCK_MONOTONIC
  is one clock for every process on the machine, so times from two processes compare.

``GET /_counts`` answers the counters, ``GET /_stats`` the counters and arrival times;
``POST /_reset`` clears them.
Run it as ``python -m services.bench.receiver PORT``; :class:`ReceiverProcess` does that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx

from services.common.http import wait_healthy
from services.common.redis_server import free_port


class ReceiverApp:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, int] = {"count": 0, "track": 0}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        now = time.monotonic()
        path: str = scope["path"]
        status, body = 204, b""
        if path.startswith("/count"):
            self.counts["count"] += 1
        elif path.startswith("/track"):
            self.counts["track"] += 1
            data = json.loads(b"".join(chunks))["data"]
            for alert in data["alerts"] if "alerts" in data else [data]:
                url = alert["article"]["url"]
                self.first.setdefault(url, now)
                self.last[url] = now
        elif path == "/_counts":
            status, body = 200, json.dumps(self.counts).encode()
        elif path == "/_stats":
            status = 200
            body = json.dumps(
                {"counts": self.counts, "first": self.first, "last": self.last}
            ).encode()
        elif path == "/_reset":
            self.reset()
        elif path == "/healthz":
            status = 200
        else:
            status = 404
        headers = [(b"content-type", b"application/json")] if body else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.client.get("/_counts").json()
        return counts

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
    import uvicorn

    uvicorn.run(
        ReceiverApp(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="error",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
