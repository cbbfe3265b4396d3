"""The notify service: ``articles:classified`` -> alerts -> delivery."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

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
from services.notify.channels.webhook import WebhookChannel
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.retry import RetryPolicy
from services.notify.store import SubscriptionStore

log = logging.getLogger(__name__)

DESCRIPTION = "Matches classified articles against subscriptions and delivers alerts."


class SubscriptionCache:
    """Subscriptions in memory, reloaded when the store's version counter moves."""

    def __init__(self, store: SubscriptionStore) -> None:
        self.store = store
        self.version = -1
        self.items: list[dict[str, Any]] = []

    async def current(self) -> list[dict[str, Any]]:
        version = await self.store.version()
        if version != self.version:
            self.items = await self.store.all()
            self.version = version
        return self.items


def matching(
    subscriptions: list[dict[str, Any]], article: ClassifiedArticle
) -> list[dict[str, Any]]:
    scores = {t.id: t.score for t in article.topics}
    out = []
    for sub in subscriptions:
        wanted = [t for t in sub.get("topics", []) if t in scores]
        if wanted and max(scores[t] for t in wanted) >= float(sub.get("min_score", 0.0)):
            out.append(sub)
    return out


def build_alert(subscription_id: str, article: ClassifiedArticle) -> Alert:
    a = article.article
    return Alert(
        id=alert_id_for(subscription_id, a.id),
        subscription_id=subscription_id,
        article=AlertArticle(
            id=a.id, title=a.title, url=a.url, source=a.source, published_at=a.published_at
        ),
        topics=[AlertTopic(id=t.id, score=t.score) for t in article.topics],
    )


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(settings, "notify", description=DESCRIPTION)
    store = SubscriptionStore(runtime.redis, runtime.names)
    cache = SubscriptionCache(store)
    writer = AlertWriter(runtime.redis, runtime.names)
    webhook = WebhookChannel(
        timeout=settings.webhook_timeout, allow_private=settings.allow_private_webhooks
    )
    worker = DeliveryWorker(
        runtime.redis,
        runtime.names,
        store,
        {"webhook": webhook},
        RetryPolicy.from_settings(settings),
        DeliveryMetrics(runtime.registry),
    )
    alerts_total = Counter(
        "topicwatch_notify_alerts_total",
        "Alerts created (new) or found to exist already (duplicate).",
        ["outcome"],
        registry=runtime.registry,
    )
    for outcome in ("new", "duplicate"):
        alerts_total.labels(outcome)

    async def handle_entries(entries: Sequence[Entry]) -> list[str]:
        subscriptions = await cache.current()
        done = []
        for entry in entries:
            try:
                article = ClassifiedArticle.model_validate_json(entry.data or b"")
            except ValidationError as exc:
                reason = f"invalid classified article: {field_errors(exc)[:3]}"
                await consumer.dead_letter(entry, reason)
                done.append(entry.id)
                continue
            for sub in matching(subscriptions, article):
                created = await writer.create(build_alert(sub["id"], article))
                alerts_total.labels("new" if created else "duplicate").inc()
            done.append(entry.id)
        return done

    consumer = runtime.consume(runtime.names.classified, GROUP_NOTIFY, handle_entries)
    runtime.run_in_background("delivery", worker.run)
    runtime.on_shutdown(webhook.aclose)
    runtime.http.include_router(
        build_router(store, worker, allow_private=settings.allow_private_webhooks)
    )
    return runtime.http
