"""Reclaim defects of issue 9, each on a real server (each test failed on the old consumer).

* a pending entry deleted from the stream is dead-lettered with the reason, not lost or wedged;
* a slow batch is not claimed and run a second time while it still runs;
* one poison entry does not hold back the rest of its batch, and is dead-lettered alone;
* a consumer whose process was SIGKILLed leaves its group once its entries were reclaimed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from services.common.consumer import Entry, StreamConsumer, ensure_groups
from services.common.http import wait_healthy
from services.common.redis_server import free_port
from services.common.retention import trim_consumed
from services.common.settings import Settings
from tests.procs import ROOT
from tests.servers import wait_for

pytestmark = pytest.mark.streams

STREAM = "t:in"
DEAD = "t:dead"


async def wait_until(predicate: Callable, limit: float = 10.0) -> None:  # type: ignore[type-arg]
    deadline = asyncio.get_running_loop().time() + limit
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def consumer_for(
    redis_url: str, client: aioredis.Redis, handler: Callable, **settings: object
) -> StreamConsumer:  # type: ignore[type-arg]
    return StreamConsumer(
        settings=Settings(redis_url=redis_url, read_block_ms=50, **settings),  # type: ignore[arg-type]
        client=client,
        stream=STREAM,
        group="g",
        consumer="c1",
        dead_letter_stream=DEAD,
        handler=handler,
    )


@asynccontextmanager
async def consuming(redis_url: str, consumer: StreamConsumer) -> AsyncIterator[None]:
    """The reader (FastStream) and the reclaimer loop, as the Runtime runs them."""
    broker = RedisBroker(redis_url)
    consumer.register(broker)
    await ensure_groups(consumer.client, [(consumer.stream, consumer.group)])
    await broker.start()
    reclaimer = asyncio.create_task(consumer.reclaim_forever())
    try:
        yield
    finally:
        reclaimer.cancel()
        await asyncio.gather(reclaimer, return_exceptions=True)
        await broker.stop()


async def pending(client: aioredis.Redis) -> int:
    return int((await client.xpending(STREAM, "g"))["pending"])


async def letters(client: aioredis.Redis) -> list[dict]:
    return [json.loads(f[b"__data__"]) for _, f in await client.xrange(DEAD)]


def n_of(entry: Entry) -> object:
    return json.loads(entry.data or b"{}")["n"]


async def test_a_deleted_pending_entry_is_dead_lettered_with_the_reason(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    ids = [await aredis.xadd(STREAM, {"__data__": json.dumps({"n": n})}) for n in range(3)]
    await ensure_groups(aredis, [(STREAM, "g")])
    await aredis.xreadgroup("g", "crashed", {STREAM: ">"}, count=10)  # read, then "crashed"
    await aredis.xdel(STREAM, ids[1])  # e.g. a producer's XADD MAXLEN trimmed it meanwhile
    seen: list[object] = []

    async def handler(entries: Sequence[Entry]) -> list[str]:
        seen.extend(n_of(e) for e in entries)
        return [e.id for e in entries]

    consumer = consumer_for(redis_url, aredis, handler, reclaim_idle_ms=200)
    async with consuming(redis_url, consumer):

        async def settled() -> bool:
            return await pending(aredis) == 0 and len(await letters(aredis)) == 1

        await wait_until(settled)
    assert sorted(seen) == [0, 2]  # type: ignore[type-var]
    [letter] = await letters(aredis)
    assert letter["entry_id"] == ids[1].decode()
    assert "deleted from the stream" in letter["reason"]
    # Retention is not wedged behind it: what was consumed can be trimmed.
    assert await trim_consumed(aredis, STREAM, keep=1) == 1


async def test_a_slow_batch_is_not_run_twice_concurrently(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """A batch running longer than reclaim_idle_ms is still only running once."""
    for n in range(3):
        await aredis.xadd(STREAM, {"__data__": json.dumps({"n": n})})
    runs: Counter[object] = Counter()
    running = 0
    overlapped = False

    async def slow(entries: Sequence[Entry]) -> list[str]:
        nonlocal running, overlapped
        running += 1
        overlapped = overlapped or running > 1
        runs.update(n_of(e) for e in entries)
        await asyncio.sleep(1.5)  # five times the reclaim timeout
        running -= 1
        return [e.id for e in entries]

    consumer = consumer_for(redis_url, aredis, slow, reclaim_idle_ms=300)
    async with consuming(redis_url, consumer):

        async def all_done() -> bool:
            return sum(runs.values()) >= 3 and await pending(aredis) == 0

        await wait_until(all_done)
        await asyncio.sleep(1.0)  # any second run (wrongly) started would show by now
    assert runs == {0: 1, 1: 1, 2: 1}
    assert not overlapped


async def test_a_poison_entry_fails_alone_and_the_rest_of_its_batch_is_acked_at_once(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    for n in range(10):
        value = "poison" if n == 4 else n
        await aredis.xadd(STREAM, {"__data__": json.dumps({"n": value})})
    processed: set[object] = set()
    poison_batches: list[int] = []

    async def handler(entries: Sequence[Entry]) -> list[str]:
        for entry in entries:
            if n_of(entry) == "poison":
                poison_batches.append(len(entries))
                raise ValueError("a bug this entry triggers")
        processed.update(n_of(e) for e in entries)
        return [e.id for e in entries]

    # Reclaim is a minute away: whatever is acked before then was acked by the reader's run.
    consumer = consumer_for(redis_url, aredis, handler, reclaim_idle_ms=60_000, max_deliveries=2)
    async with consuming(redis_url, consumer):

        async def only_poison_left() -> bool:
            return await pending(aredis) == 1

        await wait_until(only_poison_left)
        assert processed == {0, 1, 2, 3, 5, 6, 7, 8, 9}
        [left] = await aredis.xpending_range(STREAM, "g", "-", "+", 10)
        assert left["times_delivered"] == 1
        assert poison_batches[0] == 10  # it came in one batch with the others

    # Now reclaim it (a second consumer with a short timeout): retried alone, then dead-lettered.
    quick = consumer_for(redis_url, aredis, handler, reclaim_idle_ms=100, max_deliveries=2)
    quick.reclaimer = "c2:reclaim"
    for _ in range(50):
        await quick.reclaim_once()
        if await pending(aredis) == 0:
            break
        await asyncio.sleep(0.15)
    [letter] = await letters(aredis)
    assert json.loads(letter["payload"]) == {"n": "poison"}
    assert "failed 2 deliveries" in letter["reason"]
    assert poison_batches[1:] and set(poison_batches[1:]) == {1}  # every retry ran it alone


# A minimal service on the shared Runtime that blocks on the entry {"n": "block"} when BLOCK=1:
# it holds that entry pending when it is killed.
SERVICE = """
import asyncio, json, os, sys, uvicorn
from services.common.runtime import Runtime
from services.common.settings import load_settings

runtime = Runtime(load_settings(), "classify", description="reclaim test")
BLOCK = os.environ.get("BLOCK") == "1"

async def handle(entries):
    for entry in entries:
        if BLOCK and json.loads(entry.data)["n"] == "block":
            await asyncio.Event().wait()
    await runtime.redis.rpush("done", *[json.loads(e.data)["n"] for e in entries])
    return [e.id for e in entries]

runtime.consume("t:in", "g", handle)
uvicorn.run(runtime.http, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_a_killed_consumer_is_reclaimed_then_removed_from_its_group(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    env = {
        **os.environ,
        "TOPICWATCH_REDIS_URL": redis_url,
        "TOPICWATCH_READ_BLOCK_MS": "50",
        "TOPICWATCH_RECLAIM_IDLE_MS": "500",
    }

    def spawn(block: bool, name: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVICE, str(port)],
            env={**env, "BLOCK": "1" if block else "0"},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(f"http://127.0.0.1:{port}", alive=lambda: proc.poll() is None)
        return proc, proc.pid

    first, first_pid = spawn(True, "first")
    second = None
    try:
        client.xadd(STREAM, {"__data__": json.dumps({"n": "block"})})
        client.xadd(STREAM, {"__data__": json.dumps({"n": "after"})})

        def held_by_first() -> bool:
            owners = {p["consumer"] for p in client.xpending_range(STREAM, "g", "-", "+", 10)}
            return any(str(first_pid) in o for o in owners)

        wait_for(held_by_first, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait()

        second, second_pid = spawn(False, "second")
        wait_for(lambda: client.xpending(STREAM, "g")["pending"] == 0, timeout=40)
        assert sorted(client.lrange("done", 0, -1)) == ["after", "block"]

        def only_live_consumers() -> list[str] | None:
            names = [c["name"] for c in client.xinfo_consumers(STREAM, "g")]
            return names if all(str(second_pid) in n for n in names) else None

        names = wait_for(only_live_consumers, timeout=40)
        assert names  # the live process's reader is still there
        assert not any(str(first_pid) in n for n in names)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
        client.close()
