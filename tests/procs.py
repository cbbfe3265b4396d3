"""Run topicwatch services as real separate processes for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from services.common.http import wait_healthy
from services.common.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class LoggedProcess:
    """A child process whose output goes to a log file: read its tail, stop it gently.

    Shared by the services here and the Prometheus/Alertmanager tools of tests/live_stack.py.
    """

    log_path: Path
    log: BinaryIO
    process: subprocess.Popen[bytes] | None

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        """SIGTERM, and SIGKILL after 15 s: a test's teardown never waits forever."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@dataclass
class ServiceProcess(LoggedProcess):
    service: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        env = {**os.environ, **self.env, f"TOPICWATCH_{self.service.upper()}_PORT": str(self.port)}
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", self.service],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        # Generous: ingest warms up its language model, date parsers (all languages) and HTML
        # extractor before it is healthy, and three services start at once on a busy machine.
        try:
            wait_healthy(self.url, timeout, alive=lambda: self.process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.service}: {exc}\n{self.output()}") from None


def start_stack(
    env: dict[str, str], log_dir: Path, services: tuple[str, ...] = ("ingest", "classify", "notify")
) -> dict[str, ServiceProcess]:
    procs = {name: ServiceProcess(name, env, log_dir / f"{name}.log").start() for name in services}
    try:
        for proc in procs.values():
            proc.wait_healthy()
    except Exception:
        for proc in procs.values():
            proc.stop()
        raise
    return procs
