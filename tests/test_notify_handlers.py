"""notify's stream handler called directly (no app, no HTTP) against the real test Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as redis_async
from prometheus_client import CollectorRegistry

from services.common.consumer import DeadLetters, Entry
from services.common.models import (
    Article,
    ClassifiedArticle,
    DeadLetter,
    TopicTag,
    alert_id_for,
    content_hash_for,
)
from services.common.streams import DATA_FIELD, GROUP_NOTIFY, StreamNames
from services.notify.alerts import AlertWriter
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.handlers import NotifyEntries, NotifyMetrics
from services.notify.index import SubscriptionIndex
from services.notify.neardup import RedisNearDuplicates
from services.notify.percolator import Percolator
from services.notify.retry import RetryPolicy
from services.notify.schedule import ManualClock
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TITLE = "Turkey takes delivery of the second S-400 battery from Russia"
BODY = "ANKARA - Turkey has received the second battery of the Russian S-400 system."


def classified(article_id: str, topic: str) -> bytes:
    article = Article(
        id=article_id, title=TITLE, body=BODY, content_hash=content_hash_for(TITLE, BODY)
    )
    event = ClassifiedArticle(
        article=article, topics=[TopicTag(id=topic, score=0.9)], taxonomy_version="t1"
    )
    return event.model_dump_json().encode()


def entry(entry_id: str, data: bytes) -> Entry:
    return Entry(id=entry_id, data=data, fields={DATA_FIELD.encode(): data})


async def test_one_alert_per_match_replays_create_nothing_twice_bad_entries_dead_letter(
    aredis: redis_async.Redis,
) -> None:
    names = StreamNames("hx")
    clock = ManualClock(T0)
    registry = CollectorRegistry()
    store = SubscriptionStore(aredis, names)
    sub = Subscription.create(
        SubscriptionCreate(name="desk", topics=["air-defence-procurement"]), now=T0
    )
    other = Subscription.create(SubscriptionCreate(name="cyber", topics=["cyber"]), now=T0)
    await store.put(sub)
    await store.put(other)
    writer = AlertWriter(aredis, names)
    worker = DeliveryWorker(
        aredis,
        names,
        store,
        {},
        RetryPolicy((0,), jitter=0),
        DeliveryMetrics(registry),
        clock=clock,
    )
    handle = NotifyEntries(
        redis=aredis,
        names=names,
        index=SubscriptionIndex(store, Percolator()),
        stories=RedisNearDuplicates(aredis, "hx"),
        writer=writer,
        worker=worker,
        dead_letters=DeadLetters(aredis, names.dead_letters),
        metrics=NotifyMetrics(registry),
    )
    good = entry("1-1", classified("art_1", "air-defence-procurement"))
    bad = entry("1-2", b'{"type": "classified_article"}')

    assert await handle([good, bad]) == ["1-1", "1-2"]
    assert await handle([good]) == ["1-1"]  # the entry replayed after a crash

    alert = await writer.get(alert_id_for(sub.id, "art_1"))
    assert alert is not None and alert.subscription_id == sub.id
    assert alert.article.title == TITLE
    assert await writer.get(alert_id_for(other.id, "art_1")) is None  # cyber did not match
    count = registry.get_sample_value
    assert count("topicwatch_notify_alerts_total", {"outcome": "new"}) == 1.0
    assert count("topicwatch_notify_alerts_total", {"outcome": "duplicate"}) == 1.0

    [(_, fields)] = await aredis.xrange(names.dead_letters)
    letter = DeadLetter.model_validate_json(fields[DATA_FIELD.encode()])
    assert (letter.stream, letter.group, letter.entry_id) == (names.classified, GROUP_NOTIFY, "1-2")
    assert letter.reason.startswith("invalid classified article")
