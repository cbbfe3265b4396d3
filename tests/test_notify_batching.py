"""The delivery worker's shared round trips, and two workers sharing the due subscriptions.

Real Redis (the session's server) and a real HTTP receiver; no mocks.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.notify.batching import CommandBatcher, eval_script
from services.notify.schedule import DeliveryPolicy, RateLimit, Silence, plan_lookahead
from tests.notify_receiver import Receiver
from tests.test_notify_delivery import T0, Harness, ManualClock


async def test_groups_queued_together_get_their_own_results_in_order(
    aredis: aioredis.Redis,
) -> None:
    batcher = CommandBatcher(aredis)

    async def group(n: int) -> list[object]:
        def fill(pipe) -> None:
            pipe.rpush("list", n)
            pipe.incr(f"counter:{n}")
            eval_script(pipe, "return ARGV[1] .. KEYS[1]", [f"k{n}"], [n])

        return await batcher.run(fill)

    results = await asyncio.gather(*(group(n) for n in range(50)))
    for n, (length, counter, echoed) in enumerate(results):
        assert counter == 1 and echoed == f"{n}k{n}".encode()
        assert 1 <= length <= 50
    # Each group's commands ran in the order the groups were queued.
    assert [int(x) for x in await aredis.lrange("list", 0, -1)] == list(range(50))


async def test_an_error_fails_its_own_group_only(aredis: aioredis.Redis) -> None:
    await aredis.set("text", "not a list")
    batcher = CommandBatcher(aredis)
    bad = batcher.run(lambda pipe: (pipe.incr("before"), pipe.rpush("text", "x")))
    good = batcher.run(lambda pipe: pipe.incr("other"))
    outcomes = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(outcomes[0], ResponseError) and "WRONGTYPE" in str(outcomes[0])
    assert outcomes[1] == [1]


async def test_a_lost_connection_fails_every_group_of_the_pipeline() -> None:
    client = aioredis.Redis(port=1, socket_connect_timeout=1)  # nothing listens there
    batcher = CommandBatcher(client)
    outcomes = await asyncio.gather(
        *(batcher.run(lambda pipe: pipe.get("x")) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    await client.aclose()


def test_a_plain_subscription_reads_only_its_queue_head() -> None:
    assert plan_lookahead(DeliveryPolicy(), 100) == 1
    assert plan_lookahead(None, 100) == 101
    assert plan_lookahead(DeliveryPolicy(mode="digest"), 100) == 101
    limited = DeliveryPolicy(rate_limit=RateLimit(max_alerts=1, window_minutes=5))
    assert plan_lookahead(limited, 100) == 101
    muted = DeliveryPolicy(silences=[Silence(start=T0, end=T0.replace(hour=13))])
    assert plan_lookahead(muted, 100) == 101


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


async def test_two_workers_share_the_due_subscriptions_and_deliver_each_alert_once(
    aredis: aioredis.Redis, receiver: Receiver
) -> None:
    """A worker drains at most ``max_active`` subscriptions: a second one finds the rest.
    (Before, the first leased every due subscription to itself.)"""
    clock = ManualClock(T0)
    one = Harness(aredis, clock, (0, 5))
    two = Harness(aredis, clock, (0, 5))
    for worker in (one.worker, two.worker):
        worker.max_active = 3
    subs = [await one.subscribe(webhook_url=f"{receiver.url}/{i}") for i in range(6)]
    alerts = {sub.id: [await one.alert(sub) for _ in range(3)] for sub in subs}
    first = await one.worker.claim(one.worker.max_active)
    second = await two.worker.claim(two.worker.max_active)
    assert len(first) == 3 and len(second) == 3 and not set(first) & set(second)
    await asyncio.gather(*(one.worker.drain(s) for s in first))
    await asyncio.gather(*(two.worker.drain(s) for s in second))
    received = [r.headers["webhook-id"] for r in receiver.requests]
    assert sorted(received) == sorted(a.id for batch in alerts.values() for a in batch)
    for sub in subs:  # each subscription's alerts arrived in their order
        path_ids = [
            r.headers["webhook-id"]
            for r in receiver.requests
            if r.path.endswith(f"/{subs.index(sub)}")
        ]
        assert path_ids == [a.id for a in alerts[sub.id]]
    await one.webhook.aclose()
    await two.webhook.aclose()
