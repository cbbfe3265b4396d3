"""``topicwatch bench ingest``: how fast normalisation runs, in figures (no Redis needed).

Ingest's CPU cost per article is normalisation: chrome removal, dateline, language detection
and hashing for text bodies; trafilatura for HTML pages; and the date parser, whose slow path
(dateparser) is why the exact parsers run first.  This prints each, so a change that makes one
of them slower shows up as a number rather than as a slow service.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.files import read_all
from services.common.html import extract_article
from services.common.models import ArticleSubmission
from services.ingest.dates import parse_published_at
from services.ingest.language import detect_language
from services.ingest.normalize import normalize_submission

#: The repository's example articles (any folder of article files plus one raw page ``.txt``
#: will do, e.g. ``--samples ../shared/samples``).
SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "articles"

PAGE = """<html><head><title>{title}</title><meta name="author" content="Desk">
<meta property="article:published_time" content="2023-09-19T14:20:00+02:00"></head><body>
<nav><a href="/">Home</a> | <a href="/world">World</a> | <a href="/defence">Defence</a></nav>
<div class="ad">ADVERTISEMENT - subscribe now</div><article><h1>{title}</h1>{paragraphs}</article>
<aside>Related: other stories</aside><footer>(c) 2024 Example Media</footer></body></html>"""


def register_bench(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser("ingest", help="normalisation throughput (no Redis)")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder with the samples")
    parser.add_argument("--rounds", type=int, default=5)
    parser.set_defaults(func=cmd_bench_ingest)


def _load(folder: Path) -> list[dict[str, Any]]:
    return [item.value for item in read_all([folder]) if isinstance(item.value, dict)]


def _page_text(folder: Path) -> str:
    """The raw page text (chrome lines and all) of the folder's first ``.txt`` file."""
    return sorted(folder.glob("*.txt"))[0].read_text(encoding="utf-8")


def _each(function: Callable[[Any], object], items: list[Any]) -> Callable[[], None]:
    def run() -> None:
        for item in items:
            function(item)

    return run


def _rate(label: str, count: int, run: Callable[[], None], rounds: int) -> None:
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    best, median = min(timings), statistics.median(timings)
    print(
        f"{label:<34} {count / median:>10,.0f} /s  "
        f"(median {median * 1000 / count:.3f} ms each, best {best * 1000 / count:.3f} ms)"
    )


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    raw = _load(args.samples)
    submissions = [ArticleSubmission.model_validate(item) for item in raw]
    if not args.samples.is_dir() or not any(args.samples.glob("*.txt")):
        print(
            f"topicwatch: {args.samples} needs article files and one raw page .txt",
            file=sys.stderr,
        )
        return 2
    seed_text = _page_text(args.samples)
    pages = [
        PAGE.format(
            title=item["title"],
            paragraphs="".join(f"<p>{p}</p>" for p in item["body"].split("\n\n")),
        )
        for item in raw
    ]
    detect_language("warm up the language model once before timing")
    parse_published_at("27 November 2019 16:02")  # dateparser loads its data on first use
    print(f"{len(submissions)} sample articles, {args.rounds} rounds, median rate:")
    _rate(
        "normalise text article",
        len(submissions),
        _each(normalize_submission, submissions),
        args.rounds,
    )
    seed = [ArticleSubmission(title=raw[0]["title"], body=seed_text)] * 50
    _rate("normalise seed page text", len(seed), _each(normalize_submission, seed), args.rounds)
    _rate("extract html page (trafilatura)", len(pages), _each(extract_article, pages), args.rounds)
    iso = [item["published_at"] for item in raw] * 20
    _rate("published_at ISO-8601", len(iso), _each(parse_published_at, iso), args.rounds)
    page_dates = [
        "16:02 27.11.2019",
        "Nov 27, 2019 4:02 PM",
        "Wed, 27 Nov 2019 16:02:00 +0300",
    ] * 20
    _rate(
        "published_at page formats",
        len(page_dates),
        _each(parse_published_at, page_dates),
        args.rounds,
    )
    slow = ["27 November 2019 16:02 MSK", "Nov. 27, 2019, 4:02 p.m. ET"] * 10
    _rate("published_at via dateparser", len(slow), _each(parse_published_at, slow), args.rounds)
    return 0
