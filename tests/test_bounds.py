"""Bounded by default: every key family topicwatch writes has a window, a cap or a TTL.

Each test here works on a real Redis. The whole-pipe proof (publish thousands of articles with
default settings and check every stream and key family afterwards) is tests/test_soak.py.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from services.common.retention import trim_window
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, StreamNames
from services.ingest.feed_poller import FeedRegistry

DAY_MS = 86_400_000


def test_defaults_bound_every_stream() -> None:
    """Retention is on by default and every record stream has a finite window."""
    defaults = Settings()
    assert defaults.stream_retention == 1000
    assert defaults.alerts_window_days == 30 and defaults.alerts_window_max == 1_000_000
    assert defaults.dead_letters_window_days == 30
    assert defaults.dead_letters_window_max == 100_000
    assert defaults.dedup_window_days == 90
    assert (defaults.feed_seen_days, defaults.feed_seen_max) == (30, 10_000)


async def _fill(client: aioredis.Redis, stream: str, first_ms: int, count: int) -> None:
    """``count`` entries, one millisecond apart from ``first_ms`` (explicit ids: old ones)."""
    async with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            pipe.xadd(stream, {DATA_FIELD: "{}"}, id=f"{first_ms + n}-0")
        await pipe.execute()


async def test_window_drops_entries_older_than_its_age(aredis: aioredis.Redis) -> None:
    now = int(time.time() * 1000)
    await _fill(aredis, "w:alerts", now - 40 * DAY_MS, 1000)  # 40 days old
    await _fill(aredis, "w:alerts", now - 1000, 500)  # this second
    removed = await trim_window(
        aredis, "w:alerts", max_age_ms=30 * DAY_MS, max_len=1_000_000, now_ms=now
    )
    left = await aredis.xlen("w:alerts")
    # Approximate: whole macro-nodes (100 entries by default) only, never a recent entry.
    assert removed >= 900 and left == 1500 - removed
    oldest = await aredis.xrange("w:alerts", count=1)
    assert left >= 500 and left <= 600
    recent = await aredis.xrange("w:alerts", f"{now - 1000}", "+")
    assert len(recent) == 500, "an entry inside the window was trimmed"
    assert oldest


async def test_window_caps_the_count(aredis: aioredis.Redis) -> None:
    now = int(time.time() * 1000)
    await _fill(aredis, "w:dead", now - 5000, 3000)
    await trim_window(aredis, "w:dead", max_age_ms=30 * DAY_MS, max_len=1000, now_ms=now)
    left = await aredis.xlen("w:dead")
    assert 1000 <= left <= 1100  # approximate trim keeps at most one node more
    newest = await aredis.xrevrange("w:dead", count=1)
    assert newest[0][0] == f"{now - 5000 + 2999}-0".encode()


async def test_services_keep_their_record_streams_to_the_window(
    settings: Settings, aredis: aioredis.Redis
) -> None:
    """notify windows alerts and alerts:dead, ingest the rejected stream, all dead letters."""
    from services.ingest.app import create_app as ingest_app
    from services.notify.app import create_app as notify_app

    names = StreamNames(settings.stream_prefix)
    now = int(time.time() * 1000)
    for stream in (names.alerts, names.alerts_dead, names.dead_letters, names.rejected):
        await _fill(aredis, stream, now - 31 * DAY_MS, 400)
        await _fill(aredis, stream, now - 1000, 50)
    for app in (notify_app(settings), ingest_app(settings)):
        runtime = app.state.runtime
        await runtime.apply_windows(now_ms=now)
        await runtime.redis.aclose()
    for stream in (names.alerts, names.alerts_dead, names.dead_letters, names.rejected):
        assert await aredis.xlen(stream) <= 150, stream
        assert len(await aredis.xrange(stream, f"{now - 1000}", "+")) == 50, stream


async def test_feed_seen_set_is_exact_for_listed_items_and_bounded(
    aredis: aioredis.Redis,
) -> None:
    registry = FeedRegistry(aredis, StreamNames("t"), seen_days=30, seen_max=100)
    url = "https://feeds.example/defence.xml"
    t0 = 1_700_000_000.0
    # Day 0: the feed lists items 0..49; all new.
    listed = [f"guid:{n}" for n in range(50)]
    assert await registry.already_seen(url, listed, t0) == set()
    for key in listed:
        await registry.mark_seen(url, key, t0)
    # Days 1..200: each day the feed drops its oldest item and lists a new one.
    for day in range(1, 201):
        now = t0 + day * 86_400
        listed = [f"guid:{n}" for n in range(day, day + 50)]
        seen = await registry.already_seen(url, listed, now)
        assert seen == set(listed[:-1]), f"day {day}: an item still listed was forgotten"
        await registry.mark_seen(url, listed[-1], now)
        await registry.forget_old(url, now)
    key = registry.seen_key(url)
    remembered = await aredis.zcard(key)
    # Listed items (50) plus those that left the feed within 30 days (30): 80, under the cap.
    assert remembered == 80
    # The count cap: a feed listing 150 items keeps only the 100 newest marks.
    now = t0 + 201 * 86_400
    for n in range(150):
        await registry.mark_seen(url, f"burst:{n}", now + n)
    await registry.forget_old(url, now + 150)
    assert await aredis.zcard(key) == 100
    assert await aredis.zscore(key, "burst:149") is not None


async def test_feed_seen_set_of_an_older_version_is_converted_not_forgotten(
    aredis: aioredis.Redis,
) -> None:
    registry = FeedRegistry(aredis, StreamNames("t"))
    url = "https://feeds.example/old.xml"
    key = registry.seen_key(url)
    await aredis.sadd(key, *[f"guid:{n}" for n in range(1200)])  # a plain set, as before
    now = time.time()
    seen = await registry.already_seen(url, ["guid:5", "guid:1199", "guid:new"], now)
    assert seen == {"guid:5", "guid:1199"}
    assert await aredis.type(key) == b"zset"
    assert await aredis.zcard(key) == 1200


async def test_dedup_window_is_the_setting(settings: Settings, aredis: aioredis.Redis) -> None:
    from services.ingest.app import create_app as ingest_app

    app = ingest_app(settings.model_copy(update={"dedup_window_days": 2.0}))
    pipeline = app.state.pipeline
    try:
        outcome = await pipeline.submit(
            {
                "title": "Poland orders more Patriot batteries",
                "body": "Poland signed a contract for two more Patriot batteries on Tuesday. " * 5,
                "url": "https://news.example/poland-patriot",
            },
            "api",
        )
        assert outcome.status == "accepted"
        keys = [k async for k in aredis.scan_iter(match=f"{settings.stream_prefix}:seen:*")]
        assert len(keys) == 2  # the URL and the content hash
        for key in keys:
            ttl = await aredis.ttl(key)
            assert 2 * 86_400 - 60 < ttl <= 2 * 86_400
    finally:
        await app.state.runtime.redis.aclose()
