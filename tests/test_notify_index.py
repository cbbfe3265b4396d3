"""The notify process's subscription index follows the store change by change (real Redis)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

import services.notify.store as store_module
from services.common.streams import StreamNames
from services.notify.index import SubscriptionIndex
from services.notify.percolator import Percolator
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription
from tests.test_notify_percolator import classified


def sub(sid: str, topic: str) -> Subscription:
    return Subscription(id=sid, name=sid, topics=[topic])


def ids(matches: list[Subscription]) -> set[str]:
    return {s.id for s in matches}


async def test_changes_are_applied_without_rebuilding(aredis: aioredis.Redis) -> None:
    store = SubscriptionStore(aredis, StreamNames("idx"))
    await store.put(sub("a", "cyber"))
    index = SubscriptionIndex(store, Percolator())
    cyber = classified("Hackers hit the grid", topics={"cyber": 0.9})
    nuclear = classified("Enrichment resumes", topics={"nuclear": 0.9})

    assert ids((await index.current()).match(cyber)) == {"a"}
    assert index.rebuilds == 1

    await store.put(sub("b", "cyber"))  # added
    await store.put(sub("a", "nuclear"))  # changed
    assert ids((await index.current()).match(cyber)) == {"b"}
    assert ids((await index.current()).match(nuclear)) == {"a"}
    await store.delete("b")  # removed
    assert ids((await index.current()).match(cyber)) == set()
    assert index.rebuilds == 1  # every change applied one by one


async def test_falling_behind_the_capped_log_rebuilds(
    aredis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHANGES_KEPT", 2)
    store = SubscriptionStore(aredis, StreamNames("idx"))
    index = SubscriptionIndex(store, Percolator())
    await index.current()
    for n in range(5):
        await store.put(sub(f"s{n}", "cyber"))
    cyber = classified("Hackers hit the grid", topics={"cyber": 0.9})
    assert ids((await index.current()).match(cyber)) == {f"s{n}" for n in range(5)}
    assert index.rebuilds == 2
