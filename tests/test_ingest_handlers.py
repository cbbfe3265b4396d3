"""ingest's stream handler called directly (no app, no HTTP) against the real test Redis."""

from __future__ import annotations

import json

import redis.asyncio as redis_async
from prometheus_client import CollectorRegistry

from services.common.consumer import Entry
from services.common.models import Article, Rejection
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, StreamNames
from services.ingest.handlers import IngestEntries
from services.ingest.pipeline import IngestMetrics, IngestPipeline

SUBMISSION = {
    "title": "Turkey takes delivery of the second S-400 battery from Russia",
    "body": "ANKARA - Turkey has received the second battery of the Russian S-400 air "
    "defence system, the defence ministry said on Tuesday.",
    "url": "https://news.example.com/2019/09/s400-second-battery?utm_source=x",
    "source": "Example News",
}


def entry(entry_id: str, data: bytes | None) -> Entry:
    fields = {DATA_FIELD.encode(): data} if data is not None else {b"other": b"x"}
    return Entry(id=entry_id, data=data, fields=fields)


async def test_every_entry_ends_accepted_duplicate_or_rejected_with_a_reason(
    aredis: redis_async.Redis, settings: Settings
) -> None:
    names = StreamNames("hx")
    registry = CollectorRegistry()
    handle = IngestEntries(IngestPipeline(aredis, names, settings, IngestMetrics(registry)))
    payload = json.dumps(SUBMISSION).encode()
    entries = [
        entry("1-1", payload),
        entry("1-2", payload),  # the same article again: a duplicate, not published twice
        entry("1-3", b"{not json"),
        entry("1-4", None),
        entry("1-5", json.dumps({"title": "no body"}).encode()),
    ]

    done = await handle(entries)

    assert done == ["1-1", "1-2", "1-3", "1-4", "1-5"]
    accepted = await aredis.xrange(names.accepted)
    assert len(accepted) == 1
    article = Article.model_validate_json(accepted[0][1][DATA_FIELD.encode()])
    assert article.title == SUBMISSION["title"]
    assert article.canonical_url == "https://news.example.com/2019/09/s400-second-battery"
    assert article.received_via == "stream"

    rejections = [
        Rejection.model_validate_json(fields[DATA_FIELD.encode()])
        for _, fields in await aredis.xrange(names.rejected)
    ]
    by_entry = {r.source_entry_id: r for r in rejections}
    assert set(by_entry) == {"1-3", "1-4", "1-5"}
    assert "not valid JSON" in by_entry["1-3"].reason
    assert by_entry["1-3"].payload == "{not json"
    assert [e.field for e in by_entry["1-4"].errors] == ["__data__"]
    assert "body" in [e.field for e in by_entry["1-5"].errors]


async def test_a_batch_gives_the_outcomes_one_at_a_time_would(
    aredis: redis_async.Redis, settings: Settings
) -> None:
    """Normalised together, recorded in one pipeline: the same article twice in one batch is
    still published once, and every entry has its outcome."""
    names = StreamNames("hb")
    pipeline = IngestPipeline(aredis, names, settings, IngestMetrics(CollectorRegistry()))
    handle = IngestEntries(pipeline)
    stories = [
        dict(SUBMISSION, url=f"https://news.example.com/{n}", title=f"{SUBMISSION['title']} {n}")
        for n in range(30)
    ]
    entries = [entry(f"2-{n}", json.dumps(story).encode()) for n, story in enumerate(stories)]
    entries.append(entry("3-1", json.dumps(stories[7]).encode()))  # again, same batch
    entries.append(entry("3-2", json.dumps({**stories[8], "url": "ftp://x"}).encode()))

    done = await handle(entries)

    assert done == [e.id for e in entries]
    accepted = [
        Article.model_validate_json(fields[DATA_FIELD.encode()])
        for _, fields in await aredis.xrange(names.accepted)
    ]
    assert [a.title for a in accepted] == [s["title"] for s in stories]
    assert all(a.language == "en" for a in accepted)
    [(_, fields)] = await aredis.xrange(names.rejected)
    rejection = Rejection.model_validate_json(fields[DATA_FIELD.encode()])
    assert rejection.source_entry_id == "3-2" and rejection.errors[0].field == "url"
    counts = {
        (s.labels["status"]): s.value
        for metric in pipeline.metrics.articles_total.collect()
        for s in metric.samples
        if s.name.endswith("_total") and s.labels["via"] == "stream"
    }
    assert counts == {"accepted": 30, "duplicate": 1, "rejected": 1}


async def test_an_entry_whose_record_redis_refuses_stays_pending_alone(
    aredis: redis_async.Redis, settings: Settings
) -> None:
    """Redis refuses one command of the batch's pipeline: that entry is not done (not acked,
    retried later), the rest of the batch is."""
    names = StreamNames("hp")
    handle = IngestEntries(
        IngestPipeline(aredis, names, settings, IngestMetrics(CollectorRegistry()))
    )
    await aredis.set(names.rejected, "not a stream")  # every XADD to it fails: WRONGTYPE
    good = entry("4-1", json.dumps(SUBMISSION).encode())
    bad = entry("4-2", b"{not json")

    assert await handle([good, bad]) == ["4-1"]
    assert await aredis.xlen(names.accepted) == 1

    await aredis.delete(names.rejected)
    assert await handle([bad]) == ["4-2"]  # the retry, alone
    assert await aredis.xlen(names.rejected) == 1


async def test_redis_down_during_a_batch_acks_nothing(settings: Settings) -> None:
    """No server at all: the handler returns no id (nothing acked), it does not raise."""
    client = redis_async.Redis(port=1, socket_connect_timeout=0.2)
    handle = IngestEntries(
        IngestPipeline(client, StreamNames("hd"), settings, IngestMetrics(CollectorRegistry()))
    )
    try:
        assert await handle([entry("5-1", json.dumps(SUBMISSION).encode())]) == []
    finally:
        await client.aclose()


async def test_through_the_consumer_a_refused_entry_is_dead_lettered_alone(
    redis_url: str, aredis: redis_async.Redis
) -> None:
    """ingest's batch handler under the real StreamConsumer: the entry whose record Redis keeps
    refusing is retried alone and dead-lettered; the others of its batch are accepted and acked."""
    import asyncio

    from faststream.redis import RedisBroker

    from services.common.consumer import StreamConsumer, ensure_groups

    settings = Settings(
        redis_url=redis_url, read_block_ms=50, reclaim_idle_ms=200, max_deliveries=2
    )
    names = StreamNames("hc")
    handle = IngestEntries(
        IngestPipeline(aredis, names, settings, IngestMetrics(CollectorRegistry()))
    )
    await aredis.set(names.rejected, "not a stream")  # rejections cannot be recorded
    stream, dead = "hc:in", "hc:dead"
    for n in range(5):
        story = dict(SUBMISSION, url=f"https://news.example.com/c{n}", title=f"Story {n} of S-400")
        await aredis.xadd(stream, {DATA_FIELD: json.dumps(story)})
        if n == 2:
            await aredis.xadd(stream, {DATA_FIELD: "{not json"})
    broker = RedisBroker(redis_url)
    consumer = StreamConsumer(
        settings=settings,
        client=aredis,
        stream=stream,
        group="ingest",
        consumer="i1",
        dead_letter_stream=dead,
        handler=handle,
    )
    consumer.register(broker)
    await ensure_groups(aredis, [(stream, "ingest")])
    await broker.start()
    reclaimer = asyncio.create_task(consumer.reclaim_forever())
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while await aredis.xlen(dead) < 1 or (await aredis.xpending(stream, "ingest"))["pending"]:
            assert asyncio.get_running_loop().time() < deadline, "not dead-lettered in time"
            await asyncio.sleep(0.05)
        [(_, fields)] = await aredis.xrange(dead)
        assert json.loads(fields[DATA_FIELD.encode()])["payload"] == "{not json"
        assert await aredis.xlen(names.accepted) == 5
    finally:
        reclaimer.cancel()
        await asyncio.gather(reclaimer, return_exceptions=True)
        await asyncio.wait_for(broker.stop(), 10)


async def test_a_batch_on_a_cluster_with_partitions(redis_cluster_url: str) -> None:
    """On a 3-master cluster with 3 partitions, one batch pipeline holds scripts for every
    partition and a rejection: each script stays in its article's slot (no CROSSSLOT), every
    article lands in its partition once, the duplicate is caught."""
    from services.common.connections import async_client

    client = async_client(redis_cluster_url, cluster=True)
    names = StreamNames(partitions=3, tagged=True)
    settings = Settings(redis_url=redis_cluster_url, redis_cluster=True)
    pipeline = IngestPipeline(client, names, settings, IngestMetrics(CollectorRegistry()))
    try:
        stories = [
            dict(SUBMISSION, url=f"https://news.example.com/p{n}", title=f"Story {n} of S-400")
            for n in range(12)
        ]
        entries = [entry(f"6-{n}", json.dumps(s).encode()) for n, s in enumerate(stories)]
        entries += [entry("7-1", json.dumps(stories[3]).encode()), entry("7-2", b"[")]

        assert await IngestEntries(pipeline)(entries) == [e.id for e in entries]

        by_partition = [await client.xlen(names.accepted_in(p)) for p in range(3)]
        assert sum(by_partition) == 12 and all(by_partition)
        assert await client.xlen(names.rejected) == 1
    finally:
        await client.aclose()
