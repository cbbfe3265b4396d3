"""The classify service: ``articles:accepted`` -> topics -> ``articles:classified``.

Also answers ``GET /v1/topics`` (the loaded taxonomy) and ``POST /v1/classify`` (a dry run of
one article, nothing published). The taxonomy is reloaded when its file changes and on
SIGHUP; an invalid new file is refused and the running taxonomy stays in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from services.classify.reload import ClassifierHolder
from services.common.consumer import Entry
from services.common.models import Article, ArticleSubmission, ClassifiedArticle, field_errors
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_CLASSIFY, encode

log = logging.getLogger(__name__)

DESCRIPTION = "Tags accepted articles with topics (scores, evidence, entities)."


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(settings, "classify", description=DESCRIPTION)
    holder = ClassifierHolder(
        settings.taxonomy_path,
        registry=runtime.registry,
        interval=settings.taxonomy_reload_interval,
    )
    runtime.http.state.classifier = holder
    articles_total = Counter(
        "topicwatch_classify_articles_total",
        "Articles classified, by outcome.",
        ["outcome"],
        registry=runtime.registry,
    )
    topics_total = Counter(
        "topicwatch_classify_topics_total",
        "Topic tags given, by topic.",
        ["topic"],
        registry=runtime.registry,
    )
    seconds = Histogram(
        "topicwatch_classify_batch_seconds",
        "Time to classify and publish one batch.",
        registry=runtime.registry,
    )
    for outcome in ("tagged", "untagged", "invalid"):
        articles_total.labels(outcome)
    for topic_id in holder.topic_ids:  # at 0 from the start: increase() sees the first tag
        topics_total.labels(topic_id)

    async def handle_entries(entries: Sequence[Entry]) -> list[str]:
        with seconds.time():
            classifier = holder.current
            done: list[str] = []
            pipe = runtime.redis.pipeline(transaction=False)
            for entry in entries:
                try:
                    article = Article.model_validate_json(entry.data or b"")
                except ValidationError as exc:
                    # Only ingest writes this stream; a bad entry is a bug: dead-letter it now.
                    await consumer.dead_letter(
                        entry, "invalid article: " + str(field_errors(exc)[:3])
                    )
                    articles_total.labels("invalid").inc()
                    done.append(entry.id)
                    continue
                result = classifier.classify(article.title, article.body)
                classified = ClassifiedArticle(
                    article=article,
                    topics=result.topics,
                    entities=result.entities,
                    taxonomy_version=result.taxonomy_version,
                )
                pipe.xadd(runtime.names.classified, encode(classified))
                articles_total.labels("tagged" if result.topics else "untagged").inc()
                for topic in result.topics:
                    if topic.id in holder.topic_ids:
                        topics_total.labels(topic.id).inc()
                done.append(entry.id)
            await pipe.execute()  # written before the batch is acked
            return done

    consumer = runtime.consume(runtime.names.accepted, GROUP_CLASSIFY, handle_entries)
    runtime.run_in_background("taxonomy-reload", holder.watch)

    async def announce_taxonomy() -> None:
        """Keep ``{prefix}:taxonomy`` naming the topics in use, so notify can refuse typos."""
        announced = None
        while True:
            clf = holder.current
            if clf.version != announced:
                ids = [str(t["id"]) for t in clf.topics_summary()]
                doc = json.dumps({"version": clf.version, "topics": ids})
                for topic_id in ids:  # a reload may bring new topics: their series start at 0
                    topics_total.labels(topic_id)
                await runtime.redis.set(runtime.names.taxonomy, doc)
                announced = clf.version
            await asyncio.sleep(1.0)

    runtime.run_in_background("taxonomy-announce", announce_taxonomy)

    @runtime.http.get("/v1/topics", tags=["topics"])
    async def topics() -> dict[str, Any]:
        """The taxonomy in use: its version and every topic."""
        clf = holder.current
        return {"taxonomy_version": clf.version, "topics": clf.topics_summary()}

    @runtime.http.post("/v1/classify", tags=["topics"])
    async def classify(submission: ArticleSubmission, explain: bool = False) -> dict[str, Any]:
        """Dry run: the topics and entities one article would get; nothing is published.

        ``?explain=true`` adds ``details``: every topic a rule fired for (tagged or not),
        its score and threshold, each rule's contribution with its evidence, and dampers.
        """
        body = submission.body or ""
        from_html = not body.strip() and bool(submission.html and submission.html.strip())
        if from_html and submission.html:
            # As ingest (and `topicwatch classify`) do: the page's main text, extracted.
            from services.common.html import NoArticleText, extract_article

            try:
                page = await asyncio.to_thread(extract_article, submission.html, url=submission.url)
            except NoArticleText as exc:
                raise HTTPException(422, detail=[{"field": "html", "message": str(exc)}]) from None
            body = page.text
        if not body.strip():
            raise HTTPException(
                422, detail=[{"field": "body", "message": "a body (or html) is needed"}]
            )
        result = holder.current.classify(submission.title, body, explain=explain)
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

    return runtime.http
