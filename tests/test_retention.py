"""Retention trims consumed entries only (real Redis, real consumer groups)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.common.retention import trim_consumed, trim_point

pytestmark = pytest.mark.streams

STREAM = "ret:s"


def test_trim_point_is_the_older_of_floor_and_cut() -> None:
    assert trim_point([(5, 0), (9, 0)], (7, 0)) == (5, 0)  # a group still needs 5-0
    assert trim_point([(9, 0)], (7, 0)) == (7, 0)  # all consumed: keep the newest
    assert trim_point([(9, 0)], None) is None  # within retention
    assert trim_point([], (7, 0)) is None  # no group: nobody to ask, keep everything


async def test_a_lagging_group_keeps_what_it_has_not_finished(aredis: aioredis.Redis) -> None:
    ids = [await aredis.xadd(STREAM, {"n": str(n)}) for n in range(100)]
    await aredis.xgroup_create(STREAM, "fast", id="0")
    await aredis.xgroup_create(STREAM, "slow", id="0")
    fast = await aredis.xreadgroup("fast", "c", {STREAM: ">"}, count=100)
    await aredis.xack(STREAM, "fast", *[e[0] for e in fast[0][1]])
    # "slow" read 60 and finished 50: entry 50 onwards is still its business.
    slow = await aredis.xreadgroup("slow", "c", {STREAM: ">"}, count=60)
    await aredis.xack(STREAM, "slow", *[e[0] for e in slow[0][1][:50]])

    removed = await trim_consumed(aredis, STREAM, keep=20)
    assert removed == 50
    first = (await aredis.xrange(STREAM, count=1))[0][0]
    assert first == ids[50]

    # Once "slow" is done, retention keeps the 20 newest.
    await aredis.xack(STREAM, "slow", *[e[0] for e in slow[0][1][50:]])
    rest = await aredis.xreadgroup("slow", "c", {STREAM: ">"}, count=100)
    await aredis.xack(STREAM, "slow", *[e[0] for e in rest[0][1]])
    assert await trim_consumed(aredis, STREAM, keep=20) == 30
    assert await aredis.xlen(STREAM) == 20


async def test_a_stream_without_groups_is_left_alone(aredis: aioredis.Redis) -> None:
    for n in range(30):
        await aredis.xadd(STREAM, {"n": str(n)})
    await aredis.xgroup_create(STREAM, "g", id="$")  # everything already "delivered"
    await aredis.xgroup_destroy(STREAM, "g")
    assert await trim_consumed(aredis, STREAM, keep=5) == 0
    assert await aredis.xlen(STREAM) == 30


def test_a_running_service_trims_its_input_once_consumed(settings, redis_client) -> None:
    """ingest with TOPICWATCH_STREAM_RETENTION=10: its input is trimmed, nothing is lost."""
    import json

    from services.common.streams import StreamNames
    from tests.ingest_server import running_ingest
    from tests.servers import wait_for

    names = StreamNames()
    for n in range(40):
        body = f"Article number {n} about procurement. " * 3
        redis_client.xadd(names.ingest, {"__data__": json.dumps({"title": f"t{n}", "body": body})})
    with running_ingest(settings, stream_retention=10):
        wait_for(lambda: redis_client.xlen(names.accepted) == 40)
        wait_for(lambda: redis_client.xlen(names.ingest) == 10)
    assert redis_client.xpending(names.ingest, "ingest")["pending"] == 0
