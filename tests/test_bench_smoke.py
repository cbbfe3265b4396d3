"""Smoke tests of the benchmark harness (services/bench): each benchmark runs end to end at a
tiny size and prints its figures.

They check that the commands work and what they print is well formed, never how fast
anything is (speed is judged from the figures a full run prints, not by tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        "published_at written out",
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
def test_smoke_bench_pipeline_quick_prints_all_five_figures(tmp_path: Path) -> None:
    """``bench pipeline --quick``: the issue 10 harness end to end, at its small size.

    Checks that every figure is there and hangs together (counts add up, ratios are the
    quotients they claim, percentiles are ordered, every process has a CPU figure), never how
    fast anything was.
    """
    out_json = tmp_path / "pipeline.json"
    out_md = tmp_path / "pipeline.md"
    result = _run(
        "pipeline", "--quick", "--json", str(out_json), "--markdown", str(out_md), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    f = json.loads(out_json.read_text())
    quick = f["sizes"]

    # the machine and its load, at start and end (figures are read against them)
    for when in ("machine_at_start", "machine_at_end"):
        assert f[when]["cores"] >= 1 and len(f[when]["load_average"]) == 3

    # (1) the bare relay: the baseline of this run
    relay = f["relay"]
    assert relay["entries"] == quick["relay_entries"] and relay["entries_per_s"] > 0
    assert relay["cpu_percent"]["load generator"] >= 0

    # (2) end to end on the realistic stream, and its ratio to (1)
    e2e = f["end_to_end"]
    assert e2e["articles"] == quick["e2e_articles"]
    assert e2e["subscriptions"] == quick["query_subscriptions"]
    assert 0.02 <= e2e["defence_share"] <= 0.25
    assert 1_000 <= e2e["mean_payload_bytes"] <= 11_000
    assert e2e["ratio_to_relay"] == pytest.approx(
        e2e["articles_per_s"] / relay["entries_per_s"], rel=0.01
    )
    assert e2e["webhooks"] > 0  # the desk subscriptions see the defence stories
    for name in ("ingest-1", "classify-1", "notify-1", "redis", "receiver", "load generator"):
        assert name in e2e["cpu_percent"]
    assert set(e2e["cpu_ms_per_article"]) == {"ingest-1", "classify-1", "notify-1"}
    assert all(ms >= 0 for ms in e2e["cpu_ms_per_article"].values())

    # (3) fan-out: every (subscription, article) delivered, one then two notify processes
    one, two = f["fanout"]
    assert [one["notify_processes"], two["notify_processes"]] == [1, 2]
    for run in (one, two):
        assert run["subscriptions"] == quick["fanout_subscriptions"]
        assert run["deliveries"] == quick["fanout_subscriptions"] * quick["fanout_articles"]
        # every one within the harness's wait, or the table says how many came in time
        assert run["redelivered"] >= 0 and run["stragglers"] >= 0
        if run["complete"]:
            assert run["delivered"] == run["deliveries"] and not run["short_subscriptions"]
        else:
            assert run["short_subscriptions"]
            assert 0 <= run["delivered"] < run["deliveries"]
            assert f"INCOMPLETE: {run['delivered']:,} of {run['deliveries']:,}" in result.stdout
        assert run["deliveries_per_s"] > 0 and "receiver" in run["cpu_percent"]
    assert "notify-2" in two["cpu_percent"]
    assert two["scaling"] == pytest.approx(
        two["deliveries_per_s"] / one["deliveries_per_s"], rel=0.01, abs=0.001
    )

    # (4) latency at each fixed rate, with the HTTP endpoints' times meanwhile
    assert [r["rate"] for r in f["latency"]] == quick["rates"]
    assert sum(r["first_webhook"]["samples"] for r in f["latency"]) > 0
    for r in f["latency"]:
        assert r["articles"] == round(r["rate"] * quick["rate_seconds"])
        lat = r["first_webhook"]
        if lat["samples"]:
            assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert r["http"]["all"]["samples"] > 0 and isinstance(r["http"]["not_ok"], dict)

    # (5) peak RSS of every process
    rss = f["peak_rss_mb"]
    assert {"ingest-1", "classify-1", "notify-1", "notify-2", "redis", "receiver"} <= set(rss)
    assert all(mb is not None and mb > 10 for mb in rss.values())

    # the targets of issue 10, each judged against this run
    assert {t["target"] for t in f["targets"]} >= {"fan-out, 1 notify", "end to end / relay"}
    assert all(isinstance(t["met"], bool) for t in f["targets"])

    # the table shows the same figures
    out = result.stdout
    for label in (
        "(1) bare relay",
        "(2) end to end",
        "(3) fan-out, 1 notify",
        "(3) fan-out, 2 notify",
        "(4) latency",
        "(5) peak RSS",
        "load average",
    ):
        assert label in out
    assert f"{relay['entries_per_s']:,.0f} entries/s" in out
    markdown = out_md.read_text()
    assert "| figure | value | notes |" in markdown and "| target (issue 10) |" in markdown
    assert f"| {relay['entries_per_s']:,.0f} entries/s |" in markdown
