"""The notify process's subscription index follows the store change by change (real Redis)."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

import services.notify.index as index_module
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


async def test_a_rebuild_is_built_off_the_event_loop(
    aredis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100,000 subscriptions take seconds of CPU to validate and index; the HTTP API and the
    probes share notify's event loop. The fresh index is filled in a worker thread, chunk by
    chunk, and the loop keeps running meanwhile (counted in ticks of a concurrent task, not
    timed); the live index is replaced only when the fresh one is complete. The cyclic
    collector (whose full collections hold the GIL while walking every object) is paused
    meanwhile and the built index frozen out of its sight."""
    monkeypatch.setattr(index_module, "REBUILD_CHUNK", 50)
    store = SubscriptionStore(aredis, StreamNames("idx"))
    for n in range(400):
        await store.put(sub(f"s{n}", "cyber"))
    index = SubscriptionIndex(store, Percolator())
    live = index.percolator
    threads: set[int] = set()
    sizes_seen_live: list[int] = []
    add_documents = index_module.add_documents

    collector: list[bool] = []

    def recording(percolator: Percolator, documents: Sequence[bytes | str]) -> None:
        threads.add(threading.get_ident())
        collector.append(gc.isenabled())
        sizes_seen_live.append(len(live))  # the live index stays as it was until the swap
        add_documents(percolator, documents)

    monkeypatch.setattr(index_module, "add_documents", recording)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    percolator = await index.current()
    done.set()
    await task
    assert percolator is live and len(live) == 400 and index.rebuilds == 1
    assert threading.get_ident() not in threads and threads
    assert sizes_seen_live == [0] * 8  # 8 chunks of 50, none visible before the swap
    assert ticks >= 8  # the loop ran other tasks at least once per chunk
    # The collector did not walk the growing index, and now never walks the built one.
    assert collector == [False] * 8 and gc.isenabled()
    assert gc.get_freeze_count() >= 400
    cyber = classified("Hackers hit the grid", topics={"cyber": 0.9})
    assert len(live.match(cyber)) == 400
