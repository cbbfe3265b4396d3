"""The embedded/bundled redis-server starts, answers and keeps data with AOF on."""

from pathlib import Path

import redis

from services.common.redis_server import RedisServer


def test_bundled_server_persists_with_aof(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path, appendonly=True)
    with server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"__data__": "{}"})
        client.close()
    port = server.port
    with RedisServer(data_dir=tmp_path, appendonly=True, port=port) as again:
        client = redis.Redis.from_url(again.url)
        assert client.xlen("s") == 1
        client.close()
