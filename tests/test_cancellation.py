"""A cancelled task stops, also while it talks to Redis (services/common/cancellation.py).

Python 3.11's ``asyncio.wait_for``, which redis-py wraps around every socket write, lost
about one cancel in seven of a task looping on GET: the task carried on, and whoever waited
for it (a service's shutdown, a test's teardown) waited forever. That hung the Redis 7
rerun of ``make test`` in the reclaim tests.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from services.common import cancellation

pytestmark = pytest.mark.streams

ROUNDS = 300


async def lost_cancels(client: aioredis.Redis, rounds: int) -> int:
    """Cancel a task looping on GET at random moments; 1 as soon as one survives its cancel."""
    rng = random.Random(9)
    lost = 0
    for _ in range(rounds):
        survived = asyncio.Event()

        async def busy() -> None:
            while not survived.is_set():  # the flag only ends a task that survived its cancel
                await client.get("k")

        task = asyncio.create_task(busy())
        await asyncio.sleep(rng.random() * 0.005)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:  # the cancel was lost: stop it by its flag, and say so at once
            survived.set()
            await asyncio.wait([task], timeout=1)
            return lost + 1
    return lost


async def test_a_task_cancelled_mid_command_always_stops(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)  # redis-py's defaults: a 5 s socket timeout
    try:
        assert await lost_cancels(client, ROUNDS) == 0
    finally:
        await client.aclose()


async def test_wait_for_still_times_out_and_returns() -> None:
    assert await cancellation.wait_for(asyncio.sleep(0, result="done"), 1) == "done"
    assert await cancellation.wait_for(asyncio.sleep(0, result="x"), None) == "x"
    with pytest.raises(TimeoutError):
        await cancellation.wait_for(asyncio.sleep(5), 0.05)
