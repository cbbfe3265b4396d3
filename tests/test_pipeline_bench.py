"""`topicwatch bench pipeline` runs the whole pipe at a small size (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.e2e


def test_bench_pipeline_prints_latency_throughput_and_baseline() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "pipeline",
            "--latency-samples",
            "3",
            "--burst",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "publish -> signed webhook, one at a time: median" in out
    assert "burst of 20: classified at" in out
    assert "baseline (same Redis, same run)" in out
