"""Redis unreachable: at start, and restarted under running services (real processes)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.redis_server import RedisServer, free_port
from services.common.streams import StreamNames
from tests.procs import ServiceProcess, start_stack
from tests.servers import wait_for

pytestmark = pytest.mark.streams

ARTICLE = {"title": "Poland orders more Patriot batteries", "body": "Warsaw signed a deal."}


def status(url: str, path: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}{path}", timeout=10)
    return response.status_code, response.json()


@pytest.fixture
def server(tmp_path: Path, redis_binary: str) -> Iterator[RedisServer]:
    """A server with the append-only file on, on a port chosen now but not started yet."""
    srv = RedisServer(
        data_dir=tmp_path / "redis", appendonly=True, binary=redis_binary, port=free_port()
    )
    yield srv
    srv.stop()


def test_services_started_before_redis_wait_for_it(server: RedisServer, tmp_path: Path) -> None:
    """All three, as compose or Kubernetes would start them: alive, waiting, then working."""
    env = {"TOPICWATCH_REDIS_URL": server.url, "TOPICWATCH_READ_BLOCK_MS": "50"}
    stack = {
        name: ServiceProcess(name, env, tmp_path / f"{name}.log").start()
        for name in ("ingest", "classify", "notify")
    }
    ingest = stack["ingest"]
    where = f"127.0.0.1:{server.port}"
    try:
        for proc in stack.values():
            # Alive and saying what it waits for; not ready.
            wait_for(lambda proc=proc: _answers(proc.url), timeout=60)
            code, live = status(proc.url, "/livez")
            assert code == 200, live

            def waiting(proc: ServiceProcess = proc) -> dict | None:
                code, ready = status(proc.url, "/readyz")
                assert code == 503, ready
                reasons = ready["reasons"]
                return ready if any(f"waiting for Redis at {where}" in r for r in reasons) else None

            ready = wait_for(waiting, timeout=60)
            assert ready["subscribers"] == "not started"
            assert any("unreachable" in r for r in ready["reasons"]), ready
        posted = httpx.post(f"{ingest.url}/v1/articles", json=ARTICLE, timeout=30)
        assert posted.status_code == 503, posted.text
        wait_for(lambda: ingest.output().count("waiting for Redis") >= 2, timeout=10)

        server.start()
        for proc in stack.values():
            proc.wait_healthy()
            code, ready = status(proc.url, "/readyz")
            assert code == 200 and ready["reasons"] == [], ready
            assert proc.process is not None and proc.process.poll() is None
            assert "Application startup failed" not in proc.output()
        posted = httpx.post(f"{ingest.url}/v1/articles", json=ARTICLE, timeout=30)
        assert posted.status_code == 202, posted.text
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: client.xlen(StreamNames().classified) == 1, timeout=30)
        client.close()
    finally:
        for proc in stack.values():
            proc.stop()


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/livez", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def _accepted_titles(client: redis.Redis) -> list[str]:
    return [
        json.loads(fields[b"__data__"])["title"]
        for _, fields in client.xrange(StreamNames().accepted)
    ]


def test_redis_restarted_under_load_the_services_resume_by_themselves(
    server: RedisServer, tmp_path: Path
) -> None:
    """A real restart of a real server (AOF on) under three running services and a publisher:
    no service exits, POST answers 503 (never 202) while Redis is down, /healthz says what is
    wrong, and every article answered 202 is classified once Redis is back."""
    server.start()
    env = {
        "TOPICWATCH_REDIS_URL": server.url,
        "TOPICWATCH_READ_BLOCK_MS": "50",
        "TOPICWATCH_RECLAIM_IDLE_MS": "1000",
    }
    stack = start_stack(env, tmp_path)
    pids = {name: proc.process.pid for name, proc in stack.items() if proc.process}
    results: list[tuple[float, str, int]] = []  # (sent at, title, status)
    spans: dict[str, float] = {}  # title -> answered at
    stop = threading.Event()

    def publish() -> None:
        n = 0
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                n += 1
                title = f"Patriot order number {n}"
                body = {"title": title, "body": f"Warsaw signed deal {n} for air defence."}
                sent = time.monotonic()
                try:
                    code = http.post(f"{stack['ingest'].url}/v1/articles", json=body).status_code
                except httpx.HTTPError:
                    code = -1
                spans[title] = time.monotonic()
                results.append((sent, title, code))
                time.sleep(0.02)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        wait_for(lambda: sum(code == 202 for _, _, code in results) >= 20, timeout=30)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        down_from = time.monotonic()
        code, health = status(stack["ingest"].url, "/healthz")
        assert code == 503
        assert health["redis"].startswith("error")
        assert any("unreachable" in r for r in health["reasons"]), health
        for proc in stack.values():
            assert status(proc.url, "/livez")[0] == 200  # alive, just waiting
        wait_for(lambda: any(t > down_from and c == 503 for t, _, c in results), timeout=10)
        time.sleep(2.0)  # services retry for a while
        down_until = time.monotonic()
        server.start()
        for proc in stack.values():
            proc.wait_healthy()
        wait_for(lambda: sum(c == 202 and t > down_until for t, _, c in results) >= 20, timeout=30)
    finally:
        stop.set()
        publisher.join(30)
    try:
        during = [c for t, title, c in results if down_from < t and spans[title] < down_until]
        assert during and set(during) == {503}, Counter(during)
        for name, proc in stack.items():
            assert proc.process is not None and proc.process.poll() is None, proc.output()
            assert proc.process.pid == pids[name]  # resumed, not restarted
        accepted = {title for _, title, code in results if code == 202}
        client = redis.Redis.from_url(server.url)

        def classified_titles() -> set[str]:
            return {
                json.loads(fields[b"__data__"])["article"]["title"]
                for _, fields in client.xrange(StreamNames().classified)
            }

        wait_for(lambda: accepted <= classified_titles(), timeout=60)
        client.close()
    finally:
        for proc in stack.values():
            proc.stop()
