"""Measuring the classifier against labelled articles.

Labels (as in ``examples/articles/`` and ``data/examples.jsonl``): ``labels.required`` are
topics the article must get, ``labels.optional`` are arguable either way (neither counted as a
hit nor as a false alarm), and every other topic must not be tagged.  Besides per-topic and micro
precision/recall/F1, the report lists the false alarms on articles with no required topics
(the hard negatives: sports "defence", Patriot memory, Cyber Monday...), because those are
what teach analysts to ignore alerts.

Every figure is also broken down by length (:func:`length_bucket`), because a classifier
tuned on full articles can lose a headline-plus-one-sentence wire brief without the
overall figure moving; and by ``kind`` where the labelled file gives one (``sports``,
``business``, ``general`` negatives), because a false-alarm rate only means something per
kind of text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.classify.classifier import Classifier

#: Length buckets, by the body (the headline not counted). A wire brief is a headline and
#: one to three sentences (25-80 words); a news article is a few hundred words; above 400
#: words (or 2,800 characters, for text with long words or none) it is long-form.
BRIEF_MAX_WORDS = 80
BRIEF_MAX_CHARS = 600
ARTICLE_MAX_WORDS = 400
ARTICLE_MAX_CHARS = 2800
BUCKETS = ("brief", "article", "long-form")


def length_bucket(body: str) -> str:
    """``brief`` (<= 80 words and <= 600 characters), ``long-form`` (> 400 words or
    > 2,800 characters) or ``article`` (everything between)."""
    words = len(body.split())
    chars = len(body)
    if words <= BRIEF_MAX_WORDS and chars <= BRIEF_MAX_CHARS:
        return "brief"
    if words > ARTICLE_MAX_WORDS or chars > ARTICLE_MAX_CHARS:
        return "long-form"
    return "article"


@dataclass(frozen=True, slots=True)
class LabelledArticle:
    id: str
    title: str
    body: str
    required: frozenset[str]
    optional: frozenset[str]
    #: What kind of text it is, when the labelled file says (``positive``, ``sports``,
    #: ``business``, ``general``...): false alarms are reported per kind.
    kind: str | None = None

    @property
    def bucket(self) -> str:
        return length_bucket(self.body)


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
    kind = obj.get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind.strip()):
        raise LabelError(f"{position}: field 'kind' must be a non-empty string")
    return LabelledArticle(
        id=str(obj.get("id") or position),
        title=title,
        body=body,
        required=frozenset(required),
        optional=frozenset(optional),
        kind=kind,
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

    def add(self, other: TopicCounts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass(slots=True)
class ArticleOutcome:
    id: str
    predicted: dict[str, float]
    missed: list[str]
    unexpected: list[str]
    bucket: str = "article"
    kind: str | None = None
    counts: TopicCounts = field(default_factory=TopicCounts)


@dataclass(slots=True)
class GroupFigures:
    """Micro counts and false alarms of one slice of the articles (a bucket or a kind)."""

    articles: int = 0
    micro: TopicCounts = field(default_factory=TopicCounts)
    negatives: int = 0
    false_alarms: int = 0

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.negatives if self.negatives else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "articles": self.articles,
            **self.micro.as_dict(),
            "negatives": self.negatives,
            "false_alarms": self.false_alarms,
            "false_alarm_rate": round(self.false_alarm_rate, 4),
        }


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
            total.add(c)
        return total

    def _grouped(self, key: str) -> dict[str, GroupFigures]:
        groups: dict[str, GroupFigures] = {}
        if key == "bucket":
            groups = {b: GroupFigures() for b in BUCKETS}
        for a in self.articles:
            name = a.bucket if key == "bucket" else a.kind
            if name is None:
                continue
            g = groups.setdefault(name, GroupFigures())
            g.articles += 1
            g.micro.add(a.counts)
            if a.counts.tp + a.counts.fn == 0:
                g.negatives += 1
                if a.unexpected:
                    g.false_alarms += 1
        return groups

    @property
    def buckets(self) -> dict[str, GroupFigures]:
        """Figures per length bucket (brief, article, long-form), all three always present."""
        return self._grouped("bucket")

    @property
    def kinds(self) -> dict[str, GroupFigures]:
        """Figures per labelled kind; empty when no article names its kind."""
        return self._grouped("kind")

    def to_dict(self) -> dict[str, Any]:
        return {
            "topics": {t: c.as_dict() for t, c in self.topics.items()},
            "micro": self.micro.as_dict(),
            "buckets": {b: g.as_dict() for b, g in self.buckets.items()},
            "kinds": {k: g.as_dict() for k, g in sorted(self.kinds.items())},
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
        own = TopicCounts()
        for topic in set(predicted) | set(art.required):
            counts = report.topics.setdefault(topic, TopicCounts())
            if topic in art.required:
                if topic in predicted:
                    counts.tp += 1
                    own.tp += 1
                else:
                    counts.fn += 1
                    own.fn += 1
            elif topic not in art.optional:
                counts.fp += 1
                own.fp += 1
        missed = sorted(art.required - predicted.keys())
        unexpected = sorted(predicted.keys() - art.required - art.optional)
        report.articles.append(
            ArticleOutcome(art.id, predicted, missed, unexpected, art.bucket, art.kind, own)
        )
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
    lines.extend(_render_groups("length", report.buckets))
    kinds = report.kinds
    if kinds:
        lines.append("")
        lines.extend(_render_groups("kind", dict(sorted(kinds.items()))))
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


def _render_groups(label: str, groups: dict[str, GroupFigures]) -> list[str]:
    lines = [
        f"{'by ' + label:<12} {'articles':>8} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10}"
        f" {'recall':>8} {'F1':>6} {'false alarms':>16}",
        "-" * 78,
    ]
    for name, g in groups.items():
        m = g.micro
        alarms = f"{g.false_alarms}/{g.negatives}" if g.negatives else "-"
        if g.negatives:
            alarms += f" ({100 * g.false_alarm_rate:.1f}%)"
        lines.append(
            f"{name:<12} {g.articles:>8} {m.tp:>4} {m.fp:>4} {m.fn:>4} {m.precision:>10.3f}"
            f" {m.recall:>8.3f} {m.f1:>6.3f} {alarms:>16}"
        )
    return lines
