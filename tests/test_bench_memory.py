"""``topicwatch bench memory`` at a tiny size: it writes subscriptions through the store on a
real server, starts real notify processes, and prints well-formed figures (never judged for
size here: docs/scaling.md quotes a full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT


def test_smoke_bench_memory_prints_bytes_per_subscription(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "memory", "--subscriptions", "300",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["subscriptions"] == 300
    assert figures["used_memory_after"] > figures["used_memory_before"]
    # The documents alone are most of what a subscription costs Redis.
    assert 0 < figures["document_bytes_per_subscription"] <= figures["redis_bytes_per_subscription"]
    assert figures["notify_rss_mb_empty"] > 0 and figures["notify_rss_mb_loaded"] > 0
    assert "B per subscription" in result.stdout and "KB per subscription" in result.stdout
