"""Classifier sub-commands: ``classify`` and ``eval`` (``bench classify`` is services/bench).

Both work offline (no Redis, no services): an analyst editing a taxonomy can check
what it does to a folder of articles, measure it against labelled samples, and see what it
costs, before the running service picks the file up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from services.classify.classifier import Classifier, load_classifier
from services.classify.spec import TaxonomyError
from services.common.files import read_all
from services.common.models import ArticleSubmission, article_id_for, content_hash_for
from services.common.submission import SubmissionError, read_submission

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
        "--kinds",
        type=Path,
        help="JSON object id -> kind (positive, sports, ...): false alarms per kind",
    )
    evaluate.add_argument(
        "--min-f1", type=float, help="exit with status 1 if micro-F1 is below this"
    )
    evaluate.set_defaults(func=cmd_eval)


def _load(path: Path | None) -> Classifier | None:
    try:
        return load_classifier(path)
    except TaxonomyError as exc:
        print(f"topicwatch: invalid taxonomy: {exc}", file=sys.stderr)
        return None


def _article_id(sub: ArticleSubmission, title: str, body: str) -> str:
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
    return article_id_for(canonical, content_hash_for(title, body))


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
            sub, article = read_submission(item.value)
        except SubmissionError as exc:
            problems = "; ".join(f"field {e.field}: {e.message}" for e in exc.errors)
            print(f"{item.source}: rejected: {problems}", file=sys.stderr)
            failures += 1
            continue
        title, body = article.title, article.body
        article_id = _article_id(sub, title, body)
        result = clf.classify(title, body, explain=args.explain)
        if args.explain:
            out.write(render_explanation(article_id, title, body, result) + "\n\n")
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
    kinds: dict[str, str] = {}
    if args.kinds is not None:
        try:
            kinds = json.loads(args.kinds.read_text())
        except (OSError, ValueError) as exc:
            print(f"{args.kinds}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(kinds, dict) or not all(isinstance(v, str) for v in kinds.values()):
            print(f"{args.kinds}: expected a JSON object of id -> kind", file=sys.stderr)
            return 2
    articles = []
    for item in read_all(args.files):
        if item.error is not None:
            print(f"{item.source}: {item.error}", file=sys.stderr)
            return 2
        try:
            art = labelled_from_dict(item.value, item.source)
        except LabelError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        if art.id in kinds:
            art = dataclasses.replace(art, kind=kinds[art.id])
        articles.append(art)
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
