"""``topicwatch bench ingest``: how fast normalisation runs, in figures (no Redis needed).

Ingest's CPU cost per article is normalisation: chrome removal, dateline, language detection
and hashing for text bodies; trafilatura for HTML pages; and the date parser, whose slow path
(dateparser) is why the exact parsers run first.  This prints each, so a change that makes one
of them slower shows up as a number rather than as a slow service.

Every figure is a rate **per core**: items per CPU-second of this (single-threaded) process,
so that time spent waiting for a core on a shared machine does not count; the load average is
printed with them.  Next to it, where there is one, is the same work done by ingest's code as
it was before its fast paths (``services/bench/ingest_before``), timed in the same run with
the rounds interleaved, so the speed-up is read off one machine at one moment.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.bench.ingest_before import dates as dates_before
from services.bench.ingest_before import language as language_before
from services.bench.ingest_before import normalize as normalize_before
from services.common.files import read_all
from services.common.html import extract_article
from services.common.models import ArticleSubmission
from services.harness.articles import FILLER, examples
from services.ingest.dates import parse_published_at
from services.ingest.language import detect_language
from services.ingest.normalize import normalize_submission, normalize_submissions

#: The repository's example articles (any folder of article files plus one raw page ``.txt``
#: will do, e.g. ``--samples ../shared/samples``).
SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "articles"
#: Stream entries a batch holds (the ingest consumer reads up to ``read_batch`` at a time).
BATCH = 100

PAGE = """<html><head><title>{title}</title><meta name="author" content="Desk">
<meta property="article:published_time" content="2023-09-19T14:20:00+02:00"></head><body>
<nav><a href="/">Home</a> | <a href="/world">World</a> | <a href="/defence">Defence</a></nav>
<div class="ad">ADVERTISEMENT - subscribe now</div><article><h1>{title}</h1>{paragraphs}</article>
<aside>Related: other stories</aside><footer>(c) 2024 Example Media</footer></body></html>"""

Run = Callable[[], object]


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser("ingest", help="normalisation throughput (no Redis)")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder with the samples")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--realistic", type=int, default=200, help="generated 1-10 KB articles (0: none)"
    )
    parser.set_defaults(func=cmd_bench_ingest)


def _load(folder: Path) -> list[dict[str, Any]]:
    return [item.value for item in read_all([folder]) if isinstance(item.value, dict)]


def _page_text(folder: Path) -> str:
    """The raw page text (chrome lines and all) of the folder's first ``.txt`` file."""
    return sorted(folder.glob("*.txt"))[0].read_text(encoding="utf-8")


def _each(function: Callable[[Any], object], items: Sequence[Any]) -> Run:
    def run() -> None:
        for item in items:
            function(item)

    return run


def _batched(items: Sequence[ArticleSubmission]) -> Run:
    def run() -> None:
        for start in range(0, len(items), BATCH):
            normalize_submissions(items[start : start + BATCH])

    return run


def _cpu_per_item(run: Run, count: int) -> float:
    gc.collect()
    start = time.process_time()
    run()
    return (time.process_time() - start) / count


def _rate(label: str, count: int, now: Run, before: Run | None, rounds: int) -> None:
    """Median CPU time per item over ``rounds``, the old and new code taking turns."""
    new_times, old_times = [], []
    for _ in range(rounds):
        if before is not None:
            old_times.append(_cpu_per_item(before, count))
        new_times.append(_cpu_per_item(now, count))
    new = statistics.median(new_times)
    line = f"{label:<40} {1 / new:>10,.0f} /s  ({new * 1000:.3f} ms)"
    if before is not None:
        old = statistics.median(old_times)
        line += f"   before {1 / old:>8,.0f} /s ({old * 1000:.3f} ms)   x{old / new:.1f}"
    print(line)


def realistic(count: int, seed: int = 10) -> list[ArticleSubmission]:
    """Articles like the realistic stream's: an example story padded to 1-10 KB with
    paragraphs of local-news words, no language given (so it is detected)."""
    rng = random.Random(seed)
    pool = examples()
    articles = []
    for n in range(count):
        example = rng.choice(pool)
        size = rng.randint(1_000, 10_000)
        paragraphs = [example["body"]]
        length = len(example["body"])
        while length < size:
            words = rng.choices(FILLER, k=rng.randint(30, 90))
            paragraph = " ".join(words).capitalize() + "."
            paragraphs.append(paragraph)
            length += len(paragraph) + 2
        articles.append(
            ArticleSubmission(
                title=f"{example['title']} ({n})",
                body="\n\n".join(paragraphs),
                url=f"https://news.example.org/bench/{seed}/{n}",
                source="Example Wire",
                published_at="2024-03-04T05:06:07Z",
            )
        )
    return articles


def _start_seconds() -> float | None:
    """Wall time of a fresh process importing ingest and running its warm-up."""
    code = (
        "import asyncio, time; t = time.perf_counter(); "
        "from services.ingest.handlers import warm_up; asyncio.run(warm_up()); "
        "print(time.perf_counter() - t)"
    )
    try:
        out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
        ).stdout
        return float(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    if not args.samples.is_dir() or not any(args.samples.glob("*.txt")):
        print(
            f"topicwatch: {args.samples} needs article files and one raw page .txt",
            file=sys.stderr,
        )
        return 2
    raw = _load(args.samples)
    fields = set(ArticleSubmission.model_fields)
    submissions = [
        ArticleSubmission.model_validate({k: v for k, v in item.items() if k in fields})
        for item in raw
    ]
    seed_text = _page_text(args.samples)
    pages = [
        PAGE.format(
            title=item["title"],
            paragraphs="".join(f"<p>{p}</p>" for p in item["body"].split("\n\n")),
        )
        for item in raw
    ]
    # Load the models and data once before timing (both generations of the code).
    detect_language("warm up the language model once before timing")
    language_before.detect_language("warm up the language model once before timing")
    parse_published_at("27 November 2019 16:02")
    dates_before.parse_published_at("27 November 2019 16:02")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{len(submissions)} sample articles, {args.rounds} rounds; rates per core "
        f"(items per CPU-second, median), load average {load} on {os.cpu_count()} cores"
    )
    old_normalise = normalize_before.normalize_submission
    _rate(
        "normalise text article",
        len(submissions),
        _each(normalize_submission, submissions),
        _each(old_normalise, submissions),
        args.rounds,
    )
    _rate(
        f"normalise text article, batches of {BATCH}",
        len(submissions) * 20,
        _batched(submissions * 20),
        _each(old_normalise, submissions * 20),
        args.rounds,
    )
    seed = [ArticleSubmission(title=raw[0]["title"], body=seed_text)] * 50
    _rate(
        "normalise seed page text",
        len(seed),
        _each(normalize_submission, seed),
        _each(old_normalise, seed),
        args.rounds,
    )
    if args.realistic:
        stream = realistic(args.realistic)
        _rate(
            f"normalise 1-10 KB article, batches of {BATCH}",
            len(stream),
            _batched(stream),
            _each(old_normalise, stream),
            args.rounds,
        )
    _rate(
        "extract html page (trafilatura)",
        len(pages),
        _each(extract_article, pages),
        None,
        args.rounds,
    )
    iso = [item["published_at"] for item in raw] * 20
    _rate(
        "published_at ISO-8601",
        len(iso),
        _each(parse_published_at, iso),
        _each(dates_before.parse_published_at, iso),
        args.rounds,
    )
    page_dates = [
        "16:02 27.11.2019",
        "Nov 27, 2019 4:02 PM",
        "Wed, 27 Nov 2019 16:02:00 +0300",
    ] * 20
    _rate(
        "published_at page formats",
        len(page_dates),
        _each(parse_published_at, page_dates),
        _each(dates_before.parse_published_at, page_dates),
        args.rounds,
    )
    written = ["27 November 2019 16:02 MSK", "Nov. 27, 2019, 4:02 p.m. ET"] * 10
    _rate(
        "published_at written out",
        len(written),
        _each(parse_published_at, written),
        _each(dates_before.parse_published_at, written),
        args.rounds,
    )
    # What still goes to dateparser: other languages, other orders.
    slow = ["27 ноября 2019 16:02", "27. November 2019, 16.02 Uhr"] * 10
    _rate(
        "published_at via dateparser",
        len(slow),
        _each(parse_published_at, slow),
        _each(dates_before.parse_published_at, slow),
        args.rounds,
    )
    started = _start_seconds()
    if started is not None:
        print(f"{'start (import + warm-up), wall':<40} {started:>10.2f} s")
    return 0
