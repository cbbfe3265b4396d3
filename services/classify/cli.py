"""Classifier sub-commands: ``classify``, ``eval`` and ``bench classify``.

All three work offline (no Redis, no services): an analyst editing a taxonomy can check
what it does to a folder of articles, measure it against labelled samples, and see what it
costs, before the running service picks the file up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.classify.classifier import Classifier, load_classifier
from services.classify.spec import TaxonomyError
from services.common.files import read_all
from services.common.models import ArticleSubmission, article_id_for, content_hash_for

#: Where the shared labelled samples live relative to the project root (../shared/samples).
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLES = (
    Path("../shared/samples/dev_articles.jsonl"),
    _PROJECT_ROOT.parent / "shared" / "samples" / "dev_articles.jsonl",
)
PACKAGED_EXAMPLES = Path(__file__).resolve().parent / "data" / "examples.jsonl"


def register(subparsers: Any) -> None:
    classify = subparsers.add_parser(
        "classify",
        help="tag article files offline (JSON object, JSON array or JSON lines)",
        description=(
            "Prints one JSON line per article: "
            '{"id": ..., "topics": [{"id", "score", "evidence"}]}. '
            "With --explain, a human-readable explanation instead."
        ),
    )
    classify.add_argument("files", nargs="+", metavar="FILE", help="article files or folders")
    classify.add_argument("--explain", action="store_true", help="explain every decision")
    classify.add_argument("--taxonomy", type=Path, help="taxonomy YAML (default: packaged)")
    classify.set_defaults(func=cmd_classify)

    evaluate = subparsers.add_parser(
        "eval",
        help="precision/recall/F1 of the taxonomy on labelled articles",
        description=(
            "Labelled articles carry labels.required and labels.optional topic ids; "
            "any other topic tagged counts as a false positive."
        ),
    )
    evaluate.add_argument("files", nargs="+", metavar="FILE", help="labelled article files")
    evaluate.add_argument("--taxonomy", type=Path, help="taxonomy YAML (default: packaged)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--verbose", action="store_true", help="list every article's tags")
    evaluate.add_argument(
        "--min-f1", type=float, help="exit with status 1 if micro-F1 is below this"
    )
    evaluate.set_defaults(func=cmd_eval)


def register_bench(bench_subparsers: Any) -> None:
    bench = bench_subparsers.add_parser(
        "classify",
        help="articles/s for the default taxonomy and a generated 1,000-topic taxonomy",
    )
    bench.add_argument(
        "--articles",
        type=Path,
        help="articles to classify (default: ../shared/samples/dev_articles.jsonl if present, "
        "else the packaged examples)",
    )
    bench.add_argument("--topics", type=int, default=1000, help="size of the generated taxonomy")
    bench.add_argument("--seconds", type=float, default=3.0, help="timed seconds per taxonomy")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=cmd_bench)


def _load(path: Path | None) -> Classifier | None:
    try:
        return load_classifier(path)
    except TaxonomyError as exc:
        print(f"topicwatch: invalid taxonomy: {exc}", file=sys.stderr)
        return None


def _error_fields(exc: ValidationError) -> str:
    return "; ".join(
        f"field {'.'.join(str(p) for p in err['loc']) or '(article)'}: {err['msg']}"
        for err in exc.errors()
    )


def _article_text(sub: ArticleSubmission) -> str:
    if sub.body and sub.body.strip():
        return sub.body
    if sub.html and sub.html.strip():
        from services.common.html import extract_article

        return extract_article(sub.html, url=sub.url).text
    return ""


def _article_id(sub: ArticleSubmission, body: str) -> str:
    """The id given in the input, else the id ingest would give the article."""
    if sub.id:
        return sub.id
    canonical: str | None = None
    if sub.url:
        try:
            from services.common.urls import canonical_url_or_none

            canonical = canonical_url_or_none(sub.url)
        except ValueError:
            canonical = None
    return article_id_for(canonical, content_hash_for(sub.title, body))


def cmd_classify(args: argparse.Namespace) -> int:
    from services.classify.explain import render_explanation

    clf = _load(args.taxonomy)
    if clf is None:
        return 2
    failures = 0
    out = sys.stdout
    for item in read_all(args.files):
        if item.error is not None:
            print(f"{item.source}: rejected: {item.error}", file=sys.stderr)
            failures += 1
            continue
        try:
            sub = ArticleSubmission.model_validate(item.value)
        except ValidationError as exc:
            print(f"{item.source}: rejected: {_error_fields(exc)}", file=sys.stderr)
            failures += 1
            continue
        body = _article_text(sub)
        if not body.strip():
            print(
                f"{item.source}: rejected: field body: a body (or html) is needed", file=sys.stderr
            )
            failures += 1
            continue
        article_id = _article_id(sub, body)
        result = clf.classify(sub.title, body, explain=args.explain)
        if args.explain:
            out.write(render_explanation(article_id, sub.title, body, result) + "\n\n")
        else:
            line = {
                "id": article_id,
                "topics": [t.model_dump(mode="json") for t in result.topics],
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from services.classify.evaluate import LabelError, evaluate, labelled_from_dict, render

    clf = _load(args.taxonomy)
    if clf is None:
        return 2
    articles = []
    for item in read_all(args.files):
        if item.error is not None:
            print(f"{item.source}: {item.error}", file=sys.stderr)
            return 2
        try:
            articles.append(labelled_from_dict(item.value, item.source))
        except LabelError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    if not articles:
        print("topicwatch: no labelled articles found", file=sys.stderr)
        return 2
    report = evaluate(clf, articles)
    if args.json:
        print(json.dumps({"taxonomy_version": clf.version, **report.to_dict()}, indent=2))
    else:
        print(f"taxonomy {clf.version}, {len(articles)} articles\n")
        print(render(report, verbose=args.verbose))
    if args.min_f1 is not None and report.micro.f1 < args.min_f1:
        print(
            f"topicwatch: micro-F1 {report.micro.f1:.3f} is below {args.min_f1:.3f}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from services.classify import bench, compiled

    path: Path | None = args.articles
    if path is None:
        path = next((p for p in DEFAULT_SAMPLES if p.is_file()), PACKAGED_EXAMPLES)
    if not path.is_file():
        print(f"topicwatch: no such file: {path}", file=sys.stderr)
        return 2
    articles = bench.load_articles(path)
    if not articles:
        print(f"topicwatch: no articles in {path}", file=sys.stderr)
        return 2
    mode = (
        "compiled with mypyc"
        if compiled()
        else "pure Python (not compiled, sources changed since the build, or "
        "TOPICWATCH_PURE_PYTHON=1; `pip install -e .` compiles)"
    )
    print(
        f"classifying {len(articles)} articles from {path} "
        f"(about {args.seconds:.0f} s per taxonomy, one core); classifier: {mode}...",
        file=sys.stderr,
        flush=True,
    )
    default, big = bench.run(articles, n_topics=args.topics, seconds=args.seconds)
    ratio = default.rate / big.rate if big.rate else float("inf")
    if args.json:
        print(
            json.dumps(
                {
                    "articles_file": str(path),
                    "default": {
                        "topics": default.topics,
                        "automaton_keys": default.automaton_keys,
                        "articles_per_second": round(default.rate, 1),
                    },
                    "generated": {
                        "topics": big.topics,
                        "automaton_keys": big.automaton_keys,
                        "articles_per_second": round(big.rate, 1),
                    },
                    "slowdown": round(ratio, 2),
                    "compiled": compiled(),
                }
            )
        )
    else:
        for r in (default, big):
            print(
                f"{r.label:<12} {r.topics:>5} topics {r.automaton_keys:>6} patterns "
                f"{r.rate:>9,.0f} articles/s"
            )
        print(f"slowdown with {big.topics} topics: {ratio:.2f}x")
    return 0
