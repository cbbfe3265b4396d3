"""`topicwatch up` restarts services that are killed, with the TOPICWATCH_RESTART_* periods.

Real processes throughout: the command, its three services (killed with SIGKILL here) and a
real Redis (the session fixture, so `up` starts no embedded one).  The scheduling itself —
a service waiting out its backoff never hides another one dying, and the backoff starting
over after a healthy run — is tested on the supervisor in tests/test_supervisor.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.common.http import wait_healthy
from services.common.redis_server import free_port
from tests.cli_run import clean_env, command
from tests.procs import ROOT

pytestmark = pytest.mark.e2e

SERVICES = ("ingest", "classify", "notify")


def children_serving(parent: int) -> dict[str, int]:
    """{service: pid} of ``parent``'s children running ``... serve <service>``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"serve" in argv:
            found[argv[argv.index(b"serve") + 1].decode()] = int(entry.name)
    return found


def wait_for_output(log: Path, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_text()
        if text in output:
            return output
        assert time.monotonic() < deadline, f"{text!r} not printed:\n{output}"
        time.sleep(0.1)


def test_up_restarts_killed_services_after_the_configured_delay(
    redis_url: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in SERVICES}
    env = clean_env(
        TOPICWATCH_REDIS_URL=redis_url,
        TOPICWATCH_DATA_DIR=str(tmp_path / "data"),
        TOPICWATCH_READ_BLOCK_MS="50",
        TOPICWATCH_RESTART_DELAY="0.25",
        TOPICWATCH_RESTART_DELAY_MAX="1",  # (configurable: tests keep the periods short)
        TOPICWATCH_RESTART_HEALTHY_AFTER="600",
        **{f"TOPICWATCH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen([*command(), "up"], env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        for name in SERVICES:
            wait_healthy(f"http://127.0.0.1:{ports[name]}", timeout=120)
        first = children_serving(up.pid)
        assert set(first) == set(SERVICES)

        # Two die at once: both are noticed, each restarted after the configured delay.
        for name in ("notify", "ingest"):
            os.kill(first[name], signal.SIGKILL)
        for name in ("notify", "ingest"):
            wait_for_output(log, f"{name} exited with {-signal.SIGKILL}; restarting in 0.25s")
        for name in SERVICES:
            wait_healthy(f"http://127.0.0.1:{ports[name]}", timeout=120)
        second = children_serving(up.pid)
        assert second["notify"] != first["notify"] and second["ingest"] != first["ingest"]
        assert second["classify"] == first["classify"]  # untouched
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    assert code == 0, log.read_text()
    assert not children_serving(up.pid)
