"""``topicwatch bench eventloop --quick`` runs and prints every figure (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from services.bench.eventloop import format_figures, run


def test_the_event_loop_benchmark_prints_each_step_before_and_after(tmp_path: Path) -> None:
    figures = run(quick=True, subscriptions=300)
    steps = [(s["step"], s["how"]) for s in figures["stalls"]]
    assert [step for step, _ in steps] == [
        "classify 315 KB",
        "classify 315 KB",
        "taxonomy reload",
        "taxonomy reload",
        "change poll",
        "change poll",
        "index 300 stored",
        "index 300 stored",
    ]
    assert all(s["ticks"] >= 0 and s["wall_ms"] > 0 for s in figures["stalls"])
    assert [r["subscriptions"] for r in figures["shared_filter_rebuild"]] == [2_000, 4_000]
    text = format_figures(figures)
    assert "longest gap" in text and "load average" in text and "us per subscription" in text
    json.dumps(figures)  # what --json writes
