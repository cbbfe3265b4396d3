"""``topicwatch bench eventloop``: how long CPU-heavy steps hold a service's event loop.

Every service answers its probes and API on the event loop that also consumes its stream,
so a step that runs 300 ms without an ``await`` is a 300 ms stall of ``/livez``. Each step is
measured twice in the same run, as it used to run (the baseline: on the loop, in one piece)
and as the services run it now, while a ticker task asks to wake every millisecond; the
figure is the loop's longest gap between two ticks (and the 99th percentile of the gaps),
next to the step's own wall time.

* ``classify``  one 315 KB article: the whole text (the baseline) against the handler's
  classified part (``MAX_CLASSIFIED_CHARS``).
* ``reload``    a taxonomy reload: on the loop against ``reload_off_loop`` (a worker thread);
  and one poll for changes: finding the files by parsing the taxonomy, against the list
  kept from the last load.
* ``rebuild``   notify's index of N subscriptions stored in a private Redis: ``store.all()``
  plus ``Percolator.rebuild`` on the loop, against ``SubscriptionIndex.current()`` (chunks,
  a worker thread, one swap); and the rebuild of 10,000 to 40,000 subscriptions sharing one
  filter (CPU per subscription stays flat: O(n), where it was O(n^2)).

Figures are noisy on a shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.bench.percolate import Vocabulary, generate_subscription
from services.bench.report import machine
from services.classify.handlers import MAX_CLASSIFIED_CHARS, classified_part
from services.classify.loader import DEFAULT_TAXONOMY
from services.classify.reload import ClassifierHolder, _snapshot, _watched_files
from services.common.connections import async_client
from services.common.redis_server import RedisServer
from services.common.streams import StreamNames
from services.notify.index import SubscriptionIndex
from services.notify.percolator import Percolator
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription

ARTICLE_CHARS = 315_000


@dataclass
class Stall:
    """One step run on a loop with a 1 ms ticker: its wall time and the loop's gaps."""

    step: str
    how: str
    wall_ms: float
    longest_gap_ms: float
    p99_gap_ms: float
    ticks: int

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in vars(self).items()}


async def measure(step: str, how: str, work: Callable[[], Awaitable[object]]) -> Stall:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    gaps.clear()
    started = time.perf_counter()
    await work()
    wall = time.perf_counter() - started
    stop.set()
    await task
    ordered = sorted(gaps) or [wall]
    return Stall(
        step,
        how,
        wall * 1000,
        ordered[-1] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        len(gaps),
    )


def long_article() -> str:
    """315 KB of the packaged example articles (defence and general news), repeated."""
    examples = DEFAULT_TAXONOMY.parent / "examples.jsonl"
    bodies = [json.loads(line)["body"] for line in examples.read_text().splitlines() if line]
    text = "\n\n".join(bodies)
    while len(text) < ARTICLE_CHARS:
        text += "\n\n" + text
    return text[:ARTICLE_CHARS]


async def classify_stalls(holder: ClassifierHolder) -> list[Stall]:
    body = long_article()
    classifier = holder.current

    async def whole() -> None:
        classifier.classify("A long report", body)

    async def capped() -> None:
        classifier.classify("A long report", classified_part(body))

    return [
        await measure("classify 315 KB", "whole text (baseline)", whole),
        await measure("classify 315 KB", f"first {MAX_CLASSIFIED_CHARS:,} chars", capped),
    ]


async def reload_stalls(holder: ClassifierHolder) -> list[Stall]:
    async def on_loop() -> None:
        holder.reload()

    async def poll_parsing() -> None:
        _snapshot(None)

    files = _watched_files(None)

    async def poll_listed() -> None:
        _snapshot(None, files)

    return [
        await measure("taxonomy reload", "on the loop (baseline)", on_loop),
        await measure("taxonomy reload", "worker thread, swap on loop", holder.reload_off_loop),
        await measure("change poll", "parse taxonomy (baseline)", poll_parsing),
        await measure("change poll", "stat listed files", poll_listed),
    ]


async def rebuild_stalls(count: int, workdir: Path) -> list[Stall]:
    rng = random.Random(7)
    vocab = Vocabulary.build(rng)
    subs = [generate_subscription(rng, vocab, i) for i in range(count)]
    with RedisServer(data_dir=workdir / "redis", appendonly=False) as server:
        client = async_client(server.url)
        try:
            store = SubscriptionStore(client, StreamNames("bench-loop"))
            for start in range(0, count, 50):
                await asyncio.gather(*(store.put(s) for s in subs[start : start + 50]))

            async def on_loop() -> None:
                Percolator().rebuild(await store.all())

            async def off_loop() -> None:
                await SubscriptionIndex(store, Percolator()).current()

            label = f"index {count:,} stored"
            return [
                await measure(label, "load + rebuild on the loop (baseline)", on_loop),
                await measure(label, "chunks, worker thread, swap", off_loop),
            ]
        finally:
            await client.aclose()


def shared_filter_rebuilds(sizes: list[int]) -> list[dict[str, Any]]:
    """CPU per subscription to index n subscriptions with one filter: flat when O(n)."""
    out = []
    for n in sizes:
        subs = [Subscription(id=f"s{i:06d}", name="S-400 desk", query="S-400") for i in range(n)]
        started = time.process_time()
        Percolator().rebuild(subs)
        cpu = time.process_time() - started
        out.append(
            {"subscriptions": n, "cpu_s": round(cpu, 3), "us_per_sub": round(cpu / n * 1e6, 1)}
        )
    return out


def run(quick: bool = False, subscriptions: int | None = None) -> dict[str, Any]:
    count = subscriptions or (2_000 if quick else 20_000)
    sizes = [2_000, 4_000] if quick else [10_000, 20_000, 40_000]
    holder = ClassifierHolder(None)
    with tempfile.TemporaryDirectory(prefix="topicwatch-bench-loop-") as tmp:

        async def all_stalls() -> list[Stall]:
            return [
                *await classify_stalls(holder),
                *await reload_stalls(holder),
                *await rebuild_stalls(count, Path(tmp)),
            ]

        stalls = asyncio.run(all_stalls())
    return {
        "machine": machine(),
        "stalls": [s.as_dict() for s in stalls],
        "shared_filter_rebuild": shared_filter_rebuilds(sizes),
    }


def format_figures(figures: dict[str, Any]) -> str:
    m = figures["machine"]
    lines = [
        f"topicwatch bench eventloop, {m['utc']}, {m['cores']} cores, load average "
        f"{' '.join(map(str, m['load_average']))}",
        "",
        f"{'step':<24} {'how':<40} {'wall ms':>9} {'longest gap':>12} {'p99 gap':>8}",
    ]
    for s in figures["stalls"]:
        lines.append(
            f"{s['step']:<24} {s['how']:<40} {s['wall_ms']:>9,.1f} "
            f"{s['longest_gap_ms']:>9,.1f} ms {s['p99_gap_ms']:>5,.1f} ms"
        )
    lines += ["", "subscriptions sharing one filter, index rebuilt (CPU):"]
    for r in figures["shared_filter_rebuild"]:
        lines.append(
            f"  {r['subscriptions']:>7,}: {r['cpu_s']:.3f} s, {r['us_per_sub']} us per subscription"
        )
    return "\n".join(lines)


def cmd_bench_eventloop(args: argparse.Namespace) -> int:
    figures = run(quick=args.quick, subscriptions=args.subscriptions)
    print(format_figures(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser(
        "eventloop",
        help="how long CPU-heavy steps hold an event loop, before and after (issue 10)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a test runs it)")
    parser.add_argument(
        "--subscriptions", type=int, default=None, help="stored subscriptions indexed"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.set_defaults(func=cmd_bench_eventloop)
