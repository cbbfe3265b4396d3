"""Smoke tests of the benchmark harness (services/bench): each benchmark runs end to end at a
tiny size and prints its figures.

They check that the commands work and what they print is well formed, never how fast
anything is (speed is judged from the figures a full run prints, not by tests).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.cli import main
from tests.procs import ROOT


def _run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the services run as processes: a separate interpreter
        [sys.executable, "-m", "services.cli", "bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_smoke_bench_classify_prints_both_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "classify", "--topics", "60", "--seconds", "0.3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["default"]["topics"] == 11
    assert figures["generated"]["topics"] == 60
    assert figures["generated"]["automaton_keys"] > figures["default"]["automaton_keys"]
    assert figures["default"]["articles_per_second"] > 0
    assert figures["generated"]["articles_per_second"] > 0


def test_smoke_bench_ingest_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ingest", "--rounds", "1", "--realistic", "20"]) == 0
    out = capsys.readouterr().out
    labels = (
        "normalise text article",
        "normalise text article, batches of",
        "normalise seed page text",
        "normalise 1-10 KB article",
        "extract html page",
        "published_at ISO-8601",
        "published_at page formats",
        "published_at via dateparser",
    )
    rates = [line for line in out.splitlines() if " /s " in line]
    assert [label for label in labels if any(line.startswith(label) for line in rates)] == [*labels]
    # every normalisation figure has its same-run baseline (the code before the fast paths)
    assert all(" before " in line for line in rates if line.startswith("normalise"))
    assert "load average" in out and "start (import + warm-up)" in out


def test_smoke_bench_percolate_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "percolate", "--sizes", "50,200", "--articles", "20", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert [f["stored_queries"] for f in figures] == [50, 200]
    assert all(f["articles"] == 20 and f["articles_per_s"] > 0 for f in figures)
    assert figures[0]["brute_force_articles_per_s"] > 0
    assert figures[1]["brute_force_articles_per_s"] is None
    with pytest.raises(SystemExit):
        main(["bench", "percolate", "--sizes", "ten"])


def test_smoke_bench_delivery_prints_its_figures() -> None:
    result = _run(
        "delivery", "--latency-samples", "3", "--burst", "10", "--subscriptions", "2", timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "classified -> webhook latency over 3 alerts" in result.stdout
    assert "20 alerts delivered" in result.stdout


@pytest.mark.e2e
def test_smoke_bench_pipeline_prints_latency_throughput_and_baseline() -> None:
    result = _run("pipeline", "--latency-samples", "3", "--burst", "20", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "publish -> signed webhook, one at a time: median" in out
    assert "burst of 20: classified at" in out
    assert "baseline (same Redis, same run)" in out
