"""``topicwatch bench percolate``: the matching benchmark's figures.

services/cli.py owns the ``bench`` parent parser and calls :func:`register_bench` with its
sub-parsers; this module adds no top-level command (``register`` is deliberately absent).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_SIZES = "1000,10000,100000"


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must be comma-separated integers: {value!r}"
        ) from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "percolate",
        help="articles/s matched against 1,000 / 10,000 / 100,000 stored queries",
        description=(
            "Generates stored queries and articles from a defence-news vocabulary, then "
            "prints articles matched per CPU second at each index size, with a brute-force "
            "baseline at the smallest size (see docs/notify-matching.md)."
        ),
    )
    bench.add_argument(
        "--sizes",
        type=_sizes,
        default=_sizes(DEFAULT_SIZES),
        help=f"stored query counts (default {DEFAULT_SIZES})",
    )
    bench.add_argument("--articles", type=int, default=2000, help="articles timed per size")
    bench.add_argument("--seed", type=int, default=7, help="generator seed")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench_percolate)


def cmd_bench_percolate(args: argparse.Namespace) -> int:
    from services.notify.bench import format_results, run

    if args.articles < 1:
        print("topicwatch: --articles must be at least 1", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    results = run(sizes=args.sizes, n_articles=args.articles, seed=args.seed, progress=progress)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_results(results))
    return 0
