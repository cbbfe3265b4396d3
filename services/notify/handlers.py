"""What the notify service does with a classified article, every dependency passed in.

``create_app`` (app.py) wires :class:`NotifyEntries` to ``articles:classified``; tests call it
directly against a real Redis.  For each article it asks the subscription index which
subscriptions match, checks whether the story was already alerted (near-duplicates), and
writes one alert per match; the delivery worker (``delivery.py``) sends them.  The stream
entry is done only after every alert of the article is written, so a crash in between just
replays the entry, and replays create nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from pydantic import ValidationError

from services.common.consumer import DeadLetters, Entry
from services.common.models import (
    Alert,
    AlertArticle,
    AlertTopic,
    ClassifiedArticle,
    alert_id_for,
    field_errors,
    utcnow,
)
from services.common.streams import GROUP_NOTIFY, StreamNames
from services.notify.alerts import AlertWriter
from services.notify.delivery import DeliveryWorker, destination_of
from services.notify.index import SubscriptionIndex
from services.notify.neardup import RedisNearDuplicates
from services.notify.subscriptions import Subscription


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.alerts_total = PromCounter(
            "topicwatch_notify_alerts_total",
            "Alerts created (new), found to exist already (duplicate), or folded into an"
            " earlier alert of the same story (folded).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("new", "duplicate", "folded"):
            self.alerts_total.labels(outcome)
        self.topic_alerts_total = PromCounter(
            "topicwatch_notify_topic_alerts_total",
            "New alerts by topic of their article: the topics classify announced, else 'other'.",
            ["topic"],
            registry=registry,
        )
        self.topic_alerts_total.labels("other")


def build_alerts(subscriptions: Sequence[Subscription], article: ClassifiedArticle) -> list[Alert]:
    """One alert for each subscription an article matched; the article's part of the alert
    is built once, not once per subscription."""
    a = article.article
    shared = AlertArticle(
        id=a.id, title=a.title, url=a.url, source=a.source, published_at=a.published_at
    )
    topics = [AlertTopic(id=t.id, score=t.score) for t in article.topics]
    # model_construct: every part was validated already (the article on the way in, the
    # ids are ours); validating 500 copies of it again was most of the handler's CPU.
    # Every field is given: for a field left out, pydantic calls its default_factory and
    # first asks inspect.signature whether the factory takes the validated data (for the
    # builtin ``list`` by parsing its text signature), a fifth of notify's CPU at fan-out.
    created_at = utcnow()
    return [
        Alert.model_construct(
            id=alert_id_for(subscription.id, a.id),
            subscription_id=subscription.id,
            article=shared,
            topics=topics,
            also_reported_by=[],
            created_at=created_at,
            ingested_at=a.ingested_at,
        )
        for subscription in subscriptions
    ]


class NotifyEntries:
    """The batch handler of ``articles:classified``, one per partition consumed.

    The alerts an article makes go to each matched subscription's shard (AlertWriter): one
    script call per subscription, each in one slot, whichever partition the article is in.
    """

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        names: StreamNames,
        index: SubscriptionIndex,
        stories: RedisNearDuplicates,
        writer: AlertWriter,
        worker: DeliveryWorker,
        dead_letters: DeadLetters,
        metrics: NotifyMetrics,
        partition: int = 0,
    ) -> None:
        self.redis = redis
        self.names = names
        self.source = names.classified_in(partition)
        self.index = index
        self.stories = stories
        self.writer = writer
        self.worker = worker
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.known_topics: set[str] = set()

    async def refresh_known_topics(self) -> None:
        """Label values are the announced taxonomy's topics, so a stray topic id in a stream
        entry cannot add a series; a new topic's series starts at 0 once announced."""
        raw = await self.redis.get(self.names.taxonomy)
        topics = set(json.loads(raw).get("topics", [])) if raw else set()
        for topic in topics - self.known_topics:
            self.metrics.topic_alerts_total.labels(topic)
        self.known_topics.update(topics)

    async def __call__(self, entries: Sequence[Entry]) -> list[str]:
        percolator = await self.index.current()
        done = []
        created_any = False
        for entry in entries:
            try:
                article = ClassifiedArticle.model_validate_json(entry.data or b"")
            except ValidationError as exc:
                reason = f"invalid classified article: {field_errors(exc)[:3]}"
                await self.dead_letters.write(self.source, GROUP_NOTIFY, entry, reason)
                done.append(entry.id)
                continue
            matched = percolator.match(article)
            if not matched:
                done.append(entry.id)
                continue
            a = article.article
            story = await self.stories.check(a.id, a.title, a.body)
            # One pipeline for every alert of the article (alerts.create_or_fold_many).
            results = await self.writer.create_or_fold_many(
                [
                    (alert, destination_of(subscription) is not None, story.original_id)
                    for subscription, alert in zip(
                        matched, build_alerts(matched, article), strict=True
                    )
                ],
                now=self.worker.now(),
            )
            outcomes = Counter(outcome for outcome, _ in results)
            for outcome, count in outcomes.items():
                self.metrics.alerts_total.labels(outcome).inc(count)
            created_any = created_any or outcomes["new"] + outcomes["folded"] > 0
            if outcomes["new"]:
                for topic in article.topic_ids():
                    known = topic if topic in self.known_topics else "other"
                    self.metrics.topic_alerts_total.labels(known).inc(outcomes["new"])
            done.append(entry.id)
        if created_any:
            self.worker.wake()
        return done
