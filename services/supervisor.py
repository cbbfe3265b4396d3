"""`topicwatch up`'s supervisor: restart any service that dies, without ever blocking.

Each service that exits is given a restart *deadline* (now + its backoff) and the watch loop
goes on polling the others; a restart is done by the first :meth:`Supervisor.poll` at or after
its deadline.  Sleeping in the loop instead (as this once did) meant that while one service
waited 30 s to come back, a second one that died went unnoticed for those 30 s.

The backoff doubles with each crash in a row (``first_delay``, 2x, 4x ... up to ``max_delay``)
and starts again from ``first_delay`` once a service has stayed up ``healthy_after`` seconds:
a service that crashed five times last month and once today restarts quickly today.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

SERVICES = ("ingest", "classify", "notify")

#: Defaults of `topicwatch up` (``TOPICWATCH_RESTART_*`` settings override them).
FIRST_DELAY = 2.0
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0


def serve_command(service: str) -> list[str]:
    """How `topicwatch up` runs one service: ``python -m services.cli serve <service>``."""
    return [sys.executable, "-m", "services.cli", "serve", service]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: ``first`` doubling per consecutive crash up to ``maximum``; a run of
    ``healthy_after`` seconds or more forgets the earlier crashes."""

    first: float = FIRST_DELAY
    maximum: float = MAX_DELAY
    healthy_after: float = HEALTHY_AFTER

    def delay(self, crashes_in_a_row: int) -> float:
        """The wait before restart number ``crashes_in_a_row`` (1 for the first crash)."""
        exponent = min(max(crashes_in_a_row - 1, 0), 30)  # 2**30 s is far past any maximum
        return min(self.first * 2**exponent, self.maximum)


class Supervisor:
    """Runs the services as child processes, restarts any that dies, stops all on request.

    ``poll`` is cheap and never sleeps: call it often (``topicwatch up`` does every 0.2 s).
    """

    def __init__(
        self,
        env: dict[str, str],
        services: tuple[str, ...] = SERVICES,
        *,
        quiet: bool = False,
        backoff: Backoff | None = None,
        command: Callable[[str], list[str]] = serve_command,
        clock: Callable[[], float] = time.monotonic,
        log: IO[str] | None = None,
    ) -> None:
        self.env = env
        self.services = services
        self.output = subprocess.DEVNULL if quiet else None
        self.backoff = backoff or Backoff()
        self.command = command
        self.clock = clock
        self.log = log
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        #: Crashes since the service last stayed up ``healthy_after`` seconds.
        self.crashes: dict[str, int] = dict.fromkeys(services, 0)
        #: Total restarts, for reports.
        self.restarts: dict[str, int] = dict.fromkeys(services, 0)
        #: Services waiting to be restarted, with the monotonic time at which they are due.
        self.due: dict[str, float] = {}
        self.stopping = False

    def _say(self, message: str) -> None:
        print(f"topicwatch: {message}", file=self.log or sys.stderr, flush=True)

    def spawn(self, service: str) -> None:
        self.children[service] = subprocess.Popen(  # noqa: S603 - our own CLI (or a test's)
            self.command(service), env=self.env, stdout=self.output, stderr=self.output
        )
        self.started_at[service] = self.clock()

    def start(self) -> None:
        for service in self.services:
            self.spawn(service)

    def poll(self) -> None:
        """Notice every service that has exited and restart every one that is due."""
        if self.stopping:
            return
        now = self.clock()
        for service, child in self.children.items():
            if service in self.due:
                continue
            code = child.poll()
            if code is None:
                continue
            if now - self.started_at[service] >= self.backoff.healthy_after:
                self.crashes[service] = 0
            self.crashes[service] += 1
            delay = self.backoff.delay(self.crashes[service])
            self.due[service] = now + delay
            self._say(f"{service} exited with {code}; restarting in {delay:g}s")
        for service, deadline in list(self.due.items()):
            if now >= deadline:
                del self.due[service]
                self.restarts[service] += 1
                self.spawn(service)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every running child, SIGKILL what has not exited within ``timeout``."""
        self.stopping = True
        self.due.clear()
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
