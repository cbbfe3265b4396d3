"""Every multi-key script and transaction of topicwatch, run on a real 3-master cluster with 3
partitions (docs/architecture.md, "Key layout").

A cluster refuses a script or MULTI whose keys span slots (CROSSSLOT), so each call below
would fail if the layout let one family stray from its slot. The end-to-end test
(test_partitions.py) covers the hot path; this covers the rest: subscription updates and
deletes, story folding (WATCH), dead-lettering, listing dead letters over the shards and
replaying them, redelivery of an alert found by its id alone, the feed registry, the
near-duplicate index and accept-once in every partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis_async
from prometheus_client import CollectorRegistry

from services.common.connections import async_client
from services.common.models import (
    Article,
    ClassifiedArticle,
    TopicTag,
    article_id_for,
    content_hash_for,
)
from services.common.streams import StreamNames
from services.ingest.dedup import AcceptOnce
from services.ingest.feed_poller import FeedRegistry
from services.notify.alerts import AlertWriter
from services.notify.deadletters import list_dead_letters, replay_dead_letters
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.handlers import build_alerts
from services.notify.neardup import RedisNearDuplicates
from services.notify.retry import RetryPolicy
from services.notify.schedule import ManualClock
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate

pytestmark = pytest.mark.streams

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NAMES = StreamNames(partitions=3, tagged=True)
BODY = "ANKARA - Turkey has received the second battery of the Russian S-400 system."


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[redis_async.Redis]:
    client = async_client(redis_cluster_url, cluster=True)
    yield client
    await client.aclose()


def article(n: int) -> Article:
    title = f"Turkey takes delivery of S-400 battery {n}"
    url = f"https://news.example.com/s400/{n}"
    content_hash = content_hash_for(title, BODY)
    return Article(
        id=article_id_for(url, content_hash),
        title=title,
        body=BODY,
        url=url,
        canonical_url=url,
        content_hash=content_hash,
    )


def subscriptions_in_every_shard() -> list[Subscription]:
    found: dict[int, Subscription] = {}
    while len(found) < 3:
        sub = Subscription.create(
            SubscriptionCreate(
                name="desk",
                topics=["air-defence-procurement"],
                webhook_url="https://hooks.example.com/h",
            ),
            now=T0,
        )
        found.setdefault(NAMES.shard_of(sub.id), sub)
    return list(found.values())


async def test_accept_once_in_every_partition(cluster: redis_async.Redis) -> None:
    accept = AcceptOnce(cluster, NAMES)
    articles = {}
    n = 0
    while len(articles) < 3:
        a = article(n)
        articles.setdefault(NAMES.partition_of(a.id), a)
        n += 1
    for partition, a in articles.items():
        assert (await accept.publish(a)).accepted
        assert not (await accept.publish(a)).accepted  # the same article: a duplicate
        assert await cluster.xlen(NAMES.accepted_in(partition)) == 1


async def test_notify_state_stays_in_each_subscription_slot(cluster: redis_async.Redis) -> None:
    store = SubscriptionStore(cluster, NAMES)
    subs = subscriptions_in_every_shard()
    for sub in subs:
        await store.put(sub)
    renamed = await store.update(subs[0].id, lambda s: s.model_copy(update={"name": "new"}))
    assert renamed is not None and renamed.name == "new"
    page, total = await store.page(0, 10)
    assert total == 3 and {s.id for s in page} == {s.id for s in subs}

    writer = AlertWriter(cluster, NAMES)
    first, second = article(1), article(2)
    stories = RedisNearDuplicates(cluster, key_prefix=NAMES.neardup_key("neardup"))
    assert (await stories.check(first.id, first.title, first.body)).original_id == first.id
    story = await stories.check(second.id, second.title, second.body)
    assert story.original_id == first.id  # the same text: one story
    for a in (first, second):
        classified = ClassifiedArticle(
            article=a,
            topics=[TopicTag(id="air-defence-procurement", score=0.9)],
            taxonomy_version="t1",
        )
        for alert in build_alerts(subs, classified):
            outcome, _ = await writer.create_or_fold(alert, now=T0.timestamp(), story_id=first.id)
            assert outcome == ("new" if a is first else "folded")
    for shard in range(3):
        assert await cluster.xlen(NAMES.alerts_in(shard)) == 1

    # No channel configured: every alert fails for good and is dead-lettered in its shard.
    worker = DeliveryWorker(
        cluster,
        NAMES,
        store,
        {},
        RetryPolicy((0,), jitter=0),
        DeliveryMetrics(CollectorRegistry()),
        clock=ManualClock(T0),
    )
    for _ in range(5):
        await worker.tick()
    for shard in range(3):
        assert await cluster.xlen(NAMES.alerts_dead_in(shard)) == 1
    records = await list_dead_letters(cluster, NAMES)
    assert {r.data["subscription_id"] for r in records} == {s.id for s in subs}
    folded = records[0].alert
    found = await worker.alert(folded.id)  # by its id alone: looked for in each shard
    assert found is not None and [a.id for a in found.also_reported_by] == [second.id]
    assert sorted(await replay_dead_letters(worker, records)) == sorted(r.alert.id for r in records)
    for shard in range(3):
        assert await cluster.xlen(NAMES.alerts_dead_in(shard)) == 0

    assert await store.delete(subs[1].id)
    assert len(await store.all()) == 2


async def test_feed_registry_in_its_slot(cluster: redis_async.Redis) -> None:
    feeds = FeedRegistry(cluster, NAMES)
    url = "https://news.example.com/feed.xml"
    _, created = await feeds.add(url)
    assert created
    await feeds.mark_seen(url, "item-1", T0.timestamp())
    assert await feeds.already_seen(url, ["item-1", "item-2"], T0.timestamp()) == {"item-1"}
    assert await feeds.forget_old(url, T0.timestamp() + 365 * 86_400) == 1
    assert await feeds.remove(url)
