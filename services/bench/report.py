"""Printing the benchmarks' figures: percentiles, aligned tables, the machine, JSON files.

One place for it, so that every benchmark prints its figures the same way (and the JSON a
``--json PATH`` writes is exactly what the table shows).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p95 / p99 / max in milliseconds, and the number of samples."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "samples": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p95_ms": ms(percentile(seconds, 95)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def core_share(seconds: float = 0.3) -> float:
    """The share of one core a busy loop in this process gets now (1.0 on an idle machine).

    On a shared machine this says more than the load average about how much the figures of
    the moment are depressed: each process of the benchmark gets about this share when it
    wants a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        sum(range(1_000))
    return round((time.process_time() - cpu) / (time.perf_counter() - wall), 2)


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    return {
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "core_share": core_share(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    """A figure for a table: thousands separated, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float | int):
        text = f"{value:,.{digits}f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """Columns aligned, one letter a column in ``align`` (``l`` or ``r``); by default the
    first column left and the others right (numbers)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if a == "l" else str(c).rjust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """The same table in Markdown (for docs/performance.md and the README)."""
    align = align or "l" + "r" * (len(header) - 1)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def write_json(path: str | Path, figures: Any) -> None:
    Path(path).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
