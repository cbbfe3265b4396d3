"""The notify service: ``articles:classified`` -> alerts -> delivery.

For each classified article the percolator finds the subscriptions it matches (indexed by
topic and query terms, so only candidates are checked), and each gets exactly one alert
(``alerts.py``: deterministic id, atomic ``SET NX`` + queue). A near-duplicate of a story a
subscription was already alerted about (``neardup.py``: MinHash over word shingles) does not
alert again: it is listed on that alert's ``also_reported_by``. The delivery worker
(``delivery.py``) then sends it on the subscription's channel, with digests, rate limits,
mutes, retries and dead letters. The stream entry is acknowledged only after every alert of
the article is written, so a crash in between just replays the entry, and replays create
nothing twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from fastapi import FastAPI
from prometheus_client import Counter
from pydantic import ValidationError

from services.common.consumer import Entry
from services.common.models import (
    Alert,
    AlertArticle,
    AlertTopic,
    ClassifiedArticle,
    alert_id_for,
    field_errors,
)
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_NOTIFY
from services.notify.alerts import AlertWriter
from services.notify.api import build_router
from services.notify.channels.base import Channel
from services.notify.channels.email import EmailChannel
from services.notify.channels.webhook import WebhookChannel
from services.notify.delivery import DeliveryMetrics, DeliveryWorker, destination_of
from services.notify.neardup import RedisNearDuplicates
from services.notify.percolator import Percolator
from services.notify.retry import RetryPolicy
from services.notify.schedule import system_clock
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription

log = logging.getLogger(__name__)

DESCRIPTION = "Matches classified articles against subscriptions and delivers alerts."


class SubscriptionIndex:
    """The percolator over every stored subscription, kept in step with the store.

    One cheap ``GET`` per batch tells whether any process changed a subscription. If so, the
    changes since the last look are applied one by one (re-reading each changed
    subscription), which keeps a change cheap with 100,000 subscriptions; only when the
    change log no longer holds every change since then (it is capped) is the index rebuilt.
    """

    def __init__(self, store: SubscriptionStore, percolator: Percolator) -> None:
        self.store = store
        self.percolator = percolator
        self.version = -1
        self.position = "0-0"
        self.rebuilds = 0

    async def current(self) -> Percolator:
        version = await self.store.version()
        if version == self.version:
            return self.percolator
        if self.version >= 0:
            changes = await self.store.changes_since(self.position)
            # Every change bumps the version once, in the same transaction as its log entry;
            # the log may have grown since `version` was read, never shrunk below it.
            if len(changes) >= version - self.version:
                for _change_id, sid, _op in changes:
                    subscription = await self.store.get(sid)
                    if subscription is None:
                        self.percolator.remove(sid)
                    else:
                        self.percolator.add(subscription)
                self.version += len(changes)
                if changes:
                    self.position = changes[-1][0]
                return self.percolator
        # First look, or fell behind the capped log: start again from a consistent point.
        self.version, self.position = await self.store.position()
        self.percolator.rebuild(await self.store.all())
        self.rebuilds += 1
        return self.percolator


def build_alert(subscription: Subscription, article: ClassifiedArticle) -> Alert:
    a = article.article
    return Alert(
        id=alert_id_for(subscription.id, a.id),
        subscription_id=subscription.id,
        article=AlertArticle(
            id=a.id, title=a.title, url=a.url, source=a.source, published_at=a.published_at
        ),
        topics=[AlertTopic(id=t.id, score=t.score) for t in article.topics],
        ingested_at=a.ingested_at,
    )


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = system_clock,
    channels: dict[str, Channel] | None = None,
    sse_ping_seconds: float = 15.0,
) -> FastAPI:
    """The notify app. ``clock`` and ``channels`` are for tests (a manual clock, a TLS
    context for a test SMTP server); the defaults are what production runs."""
    runtime = Runtime(settings, "notify", description=DESCRIPTION)
    store = SubscriptionStore(runtime.redis, runtime.names)
    index = SubscriptionIndex(store, Percolator(runtime.registry))
    writer = AlertWriter(runtime.redis, runtime.names)
    stories = RedisNearDuplicates(runtime.redis, settings.stream_prefix)
    if channels is None:
        channels = {
            "webhook": WebhookChannel(
                timeout=settings.webhook_timeout, allow_private=settings.allow_private_webhooks
            ),
            "email": EmailChannel.from_settings(settings),
        }
    worker = DeliveryWorker(
        runtime.redis,
        runtime.names,
        store,
        channels,
        RetryPolicy.from_settings(settings),
        DeliveryMetrics(runtime.registry),
        clock=clock,
    )
    alerts_total = Counter(
        "topicwatch_notify_alerts_total",
        "Alerts created (new), found to exist already (duplicate), or folded into an earlier"
        " alert of the same story (folded).",
        ["outcome"],
        registry=runtime.registry,
    )
    for outcome in ("new", "duplicate", "folded"):
        alerts_total.labels(outcome)
    topic_alerts_total = Counter(
        "topicwatch_notify_topic_alerts_total",
        "New alerts by topic of their article: the topics classify announced, else 'other'.",
        ["topic"],
        registry=runtime.registry,
    )
    topic_alerts_total.labels("other")
    known_topics: set[str] = set()

    async def refresh_known_topics() -> None:
        """Label values are the announced taxonomy's topics, so a stray topic id in a stream
        entry cannot add a series; a new topic's series starts at 0 once announced."""
        raw = await runtime.redis.get(runtime.names.taxonomy)
        topics = set(json.loads(raw).get("topics", [])) if raw else set()
        for topic in topics - known_topics:
            topic_alerts_total.labels(topic)
        known_topics.update(topics)

    async def handle_entries(entries: Sequence[Entry]) -> list[str]:
        percolator = await index.current()
        done = []
        created_any = False
        for entry in entries:
            try:
                article = ClassifiedArticle.model_validate_json(entry.data or b"")
            except ValidationError as exc:
                reason = f"invalid classified article: {field_errors(exc)[:3]}"
                await consumer.dead_letter(entry, reason)
                done.append(entry.id)
                continue
            matched = percolator.match(article)
            if not matched:
                done.append(entry.id)
                continue
            a = article.article
            story = await stories.check(a.id, a.title, a.body)
            for subscription in matched:
                outcome, _ = await writer.create_or_fold(
                    build_alert(subscription, article),
                    now=worker.now(),
                    deliver=destination_of(subscription) is not None,
                    story_id=story.original_id,
                )
                created_any = created_any or outcome != "duplicate"
                alerts_total.labels(outcome).inc()
                if outcome == "new":
                    for topic in article.topic_ids():
                        topic_alerts_total.labels(topic if topic in known_topics else "other").inc()
            done.append(entry.id)
        if created_any:
            worker.wake()
        return done

    consumer = runtime.consume(runtime.names.classified, GROUP_NOTIFY, handle_entries)
    runtime.run_in_background("delivery", worker.run)
    runtime.refresh_gauges(worker.refresh_backlog)
    runtime.on_startup(refresh_known_topics)
    runtime.refresh_gauges(refresh_known_topics)
    for channel in channels.values():
        runtime.on_shutdown(channel.aclose)
    runtime.http.include_router(
        build_router(settings, store, worker, clock=clock, sse_ping_seconds=sse_ping_seconds)
    )
    runtime.http.state.worker = worker
    runtime.http.state.store = store
    return runtime.http
