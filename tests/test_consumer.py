"""The reliable consumer on a real Redis: groups from 0, ack-after-done, reclaim, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.common.consumer import Entry, StreamConsumer, ensure_groups
from services.common.settings import Settings

pytestmark = pytest.mark.streams

STREAM = "t:in"
DEAD = "t:dead"


async def wait_until(predicate, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + limit
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_poison_entry_is_retried_then_dead_lettered_and_others_flow(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    settings = Settings(
        redis_url=redis_url, read_block_ms=50, reclaim_idle_ms=200, max_deliveries=3
    )
    # Published before the consumer exists: must still be processed (group from 0).
    await aredis.xadd(STREAM, {"__data__": json.dumps({"n": 1})})
    await aredis.xadd(STREAM, {"__data__": json.dumps({"n": "poison"})})
    seen: Counter[str] = Counter()
    processed: list[int] = []

    async def handler(entries: Sequence[Entry]) -> list[str]:
        done = []
        for entry in entries:
            value = json.loads(entry.data or b"{}")["n"]
            seen[str(value)] += 1
            if value == "poison":
                continue  # not done: stays pending
            processed.append(value)
            done.append(entry.id)
        return done

    broker = RedisBroker(redis_url)
    consumer = StreamConsumer(
        settings=settings,
        client=aredis,
        stream=STREAM,
        group="g",
        consumer="c1",
        dead_letter_stream=DEAD,
        handler=handler,
    )
    consumer.register(broker)
    await ensure_groups(aredis, [(STREAM, "g")])
    await broker.start()
    reclaimer = asyncio.create_task(consumer.reclaim_forever())
    try:
        await aredis.xadd(STREAM, {"__data__": json.dumps({"n": 2})})

        async def dead_lettered() -> bool:
            return await aredis.xlen(DEAD) == 1

        await wait_until(dead_lettered)
        [(_, fields)] = await aredis.xrange(DEAD)
        letter = json.loads(fields[b"__data__"])
        assert letter["stream"] == STREAM
        assert json.loads(letter["payload"]) == {"n": "poison"}
        assert "deliveries" in letter["reason"]
        assert seen["poison"] == settings.max_deliveries
        assert sorted(processed) == [1, 2]

        async def nothing_pending() -> bool:
            return (await aredis.xpending(STREAM, "g"))["pending"] == 0

        await wait_until(nothing_pending)
    finally:
        reclaimer.cancel()
        await asyncio.gather(reclaimer, return_exceptions=True)
        await broker.stop()


async def test_handler_crash_leaves_batch_pending_for_a_new_consumer(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """A process that dies mid-batch: another consumer in the group picks the entries up."""
    settings = Settings(redis_url=redis_url, read_block_ms=50, reclaim_idle_ms=200)
    for n in range(3):
        await aredis.xadd(STREAM, {"__data__": json.dumps({"n": n})})
    await ensure_groups(aredis, [(STREAM, "g")])
    # The first consumer reads the entries and "crashes" without acking.
    await aredis.xreadgroup("g", "crashed", {STREAM: ">"}, count=10)
    got: list[int] = []

    async def handler(entries: Sequence[Entry]) -> list[str]:
        got.extend(json.loads(e.data or b"{}")["n"] for e in entries)
        return [e.id for e in entries]

    broker = RedisBroker(redis_url)
    consumer = StreamConsumer(
        settings=settings,
        client=aredis,
        stream=STREAM,
        group="g",
        consumer="c2",
        dead_letter_stream=DEAD,
        handler=handler,
    )
    consumer.register(broker)
    await broker.start()
    reclaimer = asyncio.create_task(consumer.reclaim_forever())
    try:

        async def all_three() -> bool:
            return sorted(got) == [0, 1, 2]

        await wait_until(all_three)
        assert await aredis.xlen(DEAD) == 0
    finally:
        reclaimer.cancel()
        await asyncio.gather(reclaimer, return_exceptions=True)
        await broker.stop()


async def test_a_cancel_while_a_batch_finishes_is_not_swallowed(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """Stopping a service cancels its reclaim loop; that cancel must end the loop even when it
    arrives just as a batch finishes (while the batch's keep-fresh companion is stopped).

    It was swallowed there (``suppress(CancelledError)`` around the companion), so the loop
    went on and a service's shutdown waited for it forever: on Redis 7 this hung
    ``make test``'s rerun (a service ignoring SIGTERM, and FastStream's stop waiting on it).
    The handler schedules the cancel as it returns, so the cancel lands in exactly that wait.
    """
    settings = Settings(redis_url=redis_url, read_block_ms=50, reclaim_idle_ms=500)
    me: asyncio.Task[set[str]] | None = None

    async def handler(entries: Sequence[Entry]) -> list[str]:
        assert me is not None
        asyncio.get_running_loop().call_soon(me.cancel)  # lands once this batch is over
        return [e.id for e in entries]

    consumer = StreamConsumer(
        settings=settings,
        client=aredis,
        stream=STREAM,
        group="g",
        consumer="c1",
        dead_letter_stream=DEAD,
        handler=handler,
    )
    entry = Entry(id="1-0", data=b'{"n": 1}', fields={})
    me = asyncio.create_task(consumer.process([entry], "c1", ack=False))
    await asyncio.gather(me, return_exceptions=True)
    assert me.cancelled(), f"the cancel was swallowed: the batch returned {me.result()}"
