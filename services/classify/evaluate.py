"""Measuring the classifier against labelled articles.

Labels follow ``../shared/samples/dev_articles.jsonl``: ``labels.required`` are topics the
article must get, ``labels.optional`` are arguable either way (neither counted as a hit nor
as a false alarm), and every other topic must not be tagged.  Besides per-topic and micro
precision/recall/F1, the report lists the false alarms on articles with no required topics
(the hard negatives: sports "defence", Patriot memory, Cyber Monday...), because those are
what teach analysts to ignore alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.classify.classifier import Classifier


@dataclass(frozen=True, slots=True)
class LabelledArticle:
    id: str
    title: str
    body: str
    required: frozenset[str]
    optional: frozenset[str]


class LabelError(ValueError):
    """A labelled article is malformed; the message names the article and the field."""


def labelled_from_dict(obj: dict[str, Any], position: str) -> LabelledArticle:
    if not isinstance(obj, dict):
        raise LabelError(f"{position}: expected a JSON object")
    labels = obj.get("labels")
    if not isinstance(labels, dict):
        raise LabelError(f"{position}: field 'labels' must be an object with 'required'")
    required = labels.get("required", [])
    optional = labels.get("optional", [])
    for name, value in (("labels.required", required), ("labels.optional", optional)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LabelError(f"{position}: field {name!r} must be a list of topic ids")
    title = obj.get("title")
    if not isinstance(title, str) or not title.strip():
        raise LabelError(f"{position}: field 'title' is required")
    body = obj.get("body") or ""
    if not isinstance(body, str):
        raise LabelError(f"{position}: field 'body' must be a string")
    return LabelledArticle(
        id=str(obj.get("id") or position),
        title=title,
        body=body,
        required=frozenset(required),
        optional=frozenset(optional),
    )


@dataclass(slots=True)
class TopicCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(slots=True)
class ArticleOutcome:
    id: str
    predicted: dict[str, float]
    missed: list[str]
    unexpected: list[str]


@dataclass(slots=True)
class EvalReport:
    topics: dict[str, TopicCounts]
    articles: list[ArticleOutcome] = field(default_factory=list)
    negatives: int = 0
    false_alarms: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def micro(self) -> TopicCounts:
        total = TopicCounts()
        for c in self.topics.values():
            total.tp += c.tp
            total.fp += c.fp
            total.fn += c.fn
        return total

    def to_dict(self) -> dict[str, Any]:
        micro = self.micro
        return {
            "topics": {
                t: {
                    "tp": c.tp,
                    "fp": c.fp,
                    "fn": c.fn,
                    "precision": round(c.precision, 4),
                    "recall": round(c.recall, 4),
                    "f1": round(c.f1, 4),
                }
                for t, c in self.topics.items()
            },
            "micro": {
                "tp": micro.tp,
                "fp": micro.fp,
                "fn": micro.fn,
                "precision": round(micro.precision, 4),
                "recall": round(micro.recall, 4),
                "f1": round(micro.f1, 4),
            },
            "negatives": self.negatives,
            "false_alarms": [{"id": i, "topics": t} for i, t in self.false_alarms],
            "errors": [
                {"id": a.id, "missed": a.missed, "unexpected": a.unexpected}
                for a in self.articles
                if a.missed or a.unexpected
            ],
        }


def evaluate(classifier: Classifier, articles: Iterable[LabelledArticle]) -> EvalReport:
    topic_ids = [t.id for t in classifier.taxonomy.topics]
    report = EvalReport(topics={t: TopicCounts() for t in topic_ids})
    for art in articles:
        result = classifier.classify(art.title, art.body)
        predicted = {t.id: t.score for t in result.topics}
        for topic in set(predicted) | set(art.required):
            counts = report.topics.setdefault(topic, TopicCounts())
            if topic in art.required:
                if topic in predicted:
                    counts.tp += 1
                else:
                    counts.fn += 1
            elif topic not in art.optional:
                counts.fp += 1
        missed = sorted(art.required - predicted.keys())
        unexpected = sorted(predicted.keys() - art.required - art.optional)
        report.articles.append(ArticleOutcome(art.id, predicted, missed, unexpected))
        if not art.required:
            report.negatives += 1
            if unexpected:
                report.false_alarms.append((art.id, unexpected))
    return report


def render(report: EvalReport, verbose: bool = False) -> str:
    """A plain-text table (also pasted into docs/classifier.md)."""
    lines = [
        f"{'topic':<26} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8} {'F1':>6}",
        "-" * 68,
    ]
    for topic, c in report.topics.items():
        lines.append(
            f"{topic:<26} {c.tp:>4} {c.fp:>4} {c.fn:>4} {c.precision:>10.3f} {c.recall:>8.3f}"
            f" {c.f1:>6.3f}"
        )
    m = report.micro
    lines.append("-" * 68)
    lines.append(
        f"{'micro':<26} {m.tp:>4} {m.fp:>4} {m.fn:>4} {m.precision:>10.3f} {m.recall:>8.3f}"
        f" {m.f1:>6.3f}"
    )
    lines.append("")
    alarms = sum(1 for _ in report.false_alarms)
    lines.append(
        f"articles with no required topic: {report.negatives}; with a false alarm: {alarms}"
    )
    for art_id, topics in report.false_alarms:
        lines.append(f"  false alarm {art_id}: {', '.join(topics)}")
    errors = [a for a in report.articles if a.missed or a.unexpected]
    if errors:
        lines.append("")
        lines.append("errors:")
        for a in errors:
            parts = []
            if a.missed:
                parts.append("missed " + ", ".join(a.missed))
            if a.unexpected:
                parts.append(
                    "unexpected " + ", ".join(f"{t} ({a.predicted[t]:.2f})" for t in a.unexpected)
                )
            lines.append(f"  {a.id}: {'; '.join(parts)}")
    if verbose:
        lines.append("")
        for a in report.articles:
            tags = ", ".join(f"{t} {s:.2f}" for t, s in sorted(a.predicted.items()))
            lines.append(f"  {a.id}: {tags or '-'}")
    return "\n".join(lines)
