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
