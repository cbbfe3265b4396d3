"""Run the installed ``topicwatch`` command as a real subprocess, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT

#: The console script pip installed next to this interpreter (what a user runs).
SCRIPT = Path(sys.executable).with_name("topicwatch")


def command() -> list[str]:
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "services.cli"]


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without any TOPICWATCH_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICWATCH_")}
    return env | overrides


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args],
        env=env if env is not None else clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
