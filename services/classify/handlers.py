"""What the classify service does, with every dependency passed in.

``create_app`` (app.py) builds these and wires them to the stream, the background loops and
the HTTP routes; tests call them directly against a real Redis, without building the app.

* :class:`ClassifyEntries` handles a batch of ``articles:accepted``: tags each article and
  publishes it to ``articles:classified`` before the batch may be acknowledged.
* :class:`TaxonomyAnnouncer` keeps ``{prefix}:taxonomy`` naming the topics in use, so that
  notify can refuse a subscription to a topic that does not exist.
* :func:`dry_run` is ``POST /v1/classify``: one article's topics, nothing published.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from services.classify.reload import ClassifierHolder
from services.common.consumer import DeadLetters, Entry
from services.common.models import (
    Article,
    ArticleSubmission,
    ClassifiedArticle,
    FieldError,
    field_errors,
)
from services.common.streams import GROUP_CLASSIFY, StreamNames, encode
from services.common.submission import SubmissionError, read_article

#: Characters of an article's body that are classified (the rest is published untouched).
#: About 8,000 words: several times a long feature, while the body may be up to 1 MB from
#: ingest (5 MB in a dry run). Classification is CPU work on the event loop that also
#: answers the probes and the API, and it grows with the text (a 315 KB article took
#: ~0.3 s even after the quadratic steps were removed); what decides an article's topics
#: is in its opening, not after its 8,000th word. Evidence offsets stay valid: they point
#: into the body's first characters.
MAX_CLASSIFIED_CHARS = 50_000

#: The batch handler lets the event loop run other tasks (probes, API, the reload watcher)
#: once it has classified for this long, between two articles.
YIELD_AFTER_SECONDS = 0.01


def classified_part(body: str) -> str:
    """The part of ``body`` that is classified: all of it, or its first
    :data:`MAX_CLASSIFIED_CHARS` characters cut at a word boundary."""
    if len(body) <= MAX_CLASSIFIED_CHARS:
        return body
    cut = body.rfind(" ", MAX_CLASSIFIED_CHARS - 200, MAX_CLASSIFIED_CHARS)
    return body[: cut if cut > 0 else MAX_CLASSIFIED_CHARS]


class ClassifyMetrics:
    """The service's own counters (the runtime adds the stream and HTTP ones)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.articles_total = Counter(
            "topicwatch_classify_articles_total",
            "Articles classified, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.topics_total = Counter(
            "topicwatch_classify_topics_total",
            "Topic tags given, by topic.",
            ["topic"],
            registry=registry,
        )
        self.seconds = Histogram(
            "topicwatch_classify_batch_seconds",
            "Time to classify and publish one batch.",
            registry=registry,
        )
        for outcome in ("tagged", "untagged", "invalid"):
            self.articles_total.labels(outcome)

    def known_topics(self, topic_ids: Iterable[str]) -> None:
        """Start each topic's series at 0, so that increase() sees its first tag (and a
        reload that brings new topics starts theirs too)."""
        for topic_id in topic_ids:
            self.topics_total.labels(topic_id)


class ClassifyEntries:
    """The batch handler of ``articles:accepted`` (a ``BatchHandler``, see common/consumer.py).

    One per partition: it reads partition ``partition`` of ``articles:accepted`` and writes the
    same partition of ``articles:classified``, so an article stays in the partition that owns
    it from ingest to notify.
    """

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        names: StreamNames,
        holder: ClassifierHolder,
        dead_letters: DeadLetters,
        metrics: ClassifyMetrics,
        partition: int = 0,
    ) -> None:
        self.redis = redis
        self.names = names
        self.source = names.accepted_in(partition)
        self.target = names.classified_in(partition)
        self.holder = holder
        self.dead_letters = dead_letters
        self.metrics = metrics

    async def __call__(self, entries: Sequence[Entry]) -> list[str]:
        metrics = self.metrics
        with metrics.seconds.time():
            classifier = self.holder.current
            topic_ids = self.holder.topic_ids
            done: list[str] = []
            pipe = self.redis.pipeline(transaction=False)
            slice_start = time.perf_counter()
            for entry in entries:
                if time.perf_counter() - slice_start >= YIELD_AFTER_SECONDS:
                    await asyncio.sleep(0)  # one article at a time: the loop runs between
                    slice_start = time.perf_counter()
                try:
                    article = Article.model_validate_json(entry.data or b"")
                except ValidationError as exc:
                    # Only ingest writes this stream; a bad entry is a bug: dead-letter it now.
                    await self.dead_letters.write(
                        self.source,
                        GROUP_CLASSIFY,
                        entry,
                        "invalid article: " + str(field_errors(exc)[:3]),
                    )
                    metrics.articles_total.labels("invalid").inc()
                    done.append(entry.id)
                    continue
                result = classifier.classify(article.title, classified_part(article.body))
                classified = ClassifiedArticle(
                    article=article,
                    topics=result.topics,
                    entities=result.entities,
                    taxonomy_version=result.taxonomy_version,
                )
                pipe.xadd(self.target, encode(classified))
                metrics.articles_total.labels("tagged" if result.topics else "untagged").inc()
                for topic in result.topics:
                    if topic.id in topic_ids:
                        metrics.topics_total.labels(topic.id).inc()
                done.append(entry.id)
            await pipe.execute()  # written before the batch is acked
            return done


class TaxonomyAnnouncer:
    """Keeps ``{prefix}:taxonomy`` naming the topics in use: JSON ``{version, topics}``."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        names: StreamNames,
        holder: ClassifierHolder,
        metrics: ClassifyMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.names = names
        self.holder = holder
        self.metrics = metrics
        self.announced: str | None = None

    async def announce(self) -> bool:
        """Write the key if the taxonomy changed since the last announcement; True if written."""
        clf = self.holder.current
        if clf.version == self.announced:
            return False
        ids = [str(t["id"]) for t in clf.topics_summary()]
        doc = json.dumps({"version": clf.version, "topics": ids})
        if self.metrics is not None:
            self.metrics.known_topics(ids)
        await self.redis.set(self.names.taxonomy, doc)
        self.announced = clf.version
        return True

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await self.announce()
            await asyncio.sleep(interval)


class DryRunError(ValueError):
    """The submission cannot be classified; ``errors`` name every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors

    @property
    def field(self) -> str:
        return self.errors[0].field

    @property
    def message(self) -> str:
        return self.errors[0].message


async def dry_run(
    holder: ClassifierHolder, submission: ArticleSubmission, *, explain: bool = False
) -> dict[str, Any]:
    """The topics and entities one article would get; nothing is published.

    The article is read as ingest (and `topicwatch classify`) read it: the body, else the
    page's main text; the title, else the page's own (og:title, <title>, first <h1>).
    ``explain`` adds ``details``: every topic a rule fired for (tagged or not), its score and
    threshold, each rule's contribution with its evidence, and dampers.
    """
    try:
        if submission.html:  # parsing a page is CPU work: keep the loop responsive
            article = await asyncio.to_thread(read_article, submission)
        else:
            article = read_article(submission)
    except SubmissionError as exc:
        raise DryRunError(exc.errors) from None
    body, from_html = article.body, article.from_html
    result = holder.current.classify(article.title, classified_part(body), explain=explain)
    answer: dict[str, Any] = {
        "id": submission.id,
        "taxonomy_version": result.taxonomy_version,
        "topics": [t.model_dump(mode="json") for t in result.topics],
        "entities": [e.model_dump(mode="json") for e in result.entities],
    }
    if from_html:
        answer["body"] = body  # what the evidence spans of field "body" point into
    if explain:
        answer["details"] = [
            {
                "id": d.id,
                "score": d.score,
                "threshold": d.threshold,
                "tagged": d.tagged,
                "rules": [
                    {
                        "rule": f.rule,
                        "weight": f.weight,
                        "sentences": f.count,
                        "contribution": f.contribution,
                        "note": f.note,
                        "evidence": [e.model_dump(mode="json") for e in f.evidence],
                    }
                    for f in d.firings
                ],
                "dampers": [{"id": name, "factor": f} for name, f in d.dampers],
            }
            for d in result.details
        ]
    return answer
