"""Shared fixtures: a real redis-server per test session on a free port, and its clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import redis.asyncio as redis_async

from services.common.redis_server import RedisServer
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "samples"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server (the bundled binary) for the whole session; flushed per test."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"), appendonly=False)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database for each test."""
    client = redis_sync.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[redis_async.Redis]:
    client = redis_async.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at the test Redis, with short timings so tests run quickly."""
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        read_block_ms=50,
        reclaim_idle_ms=500,
        allow_private_webhooks=True,
    )


@pytest.fixture(scope="session")
def seed_article() -> dict:
    return json.loads((SAMPLES / "seed_article.json").read_text())


@pytest.fixture(scope="session")
def dev_articles() -> list[dict]:
    lines = (SAMPLES / "dev_articles.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
