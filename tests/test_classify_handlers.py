"""classify's handlers called directly (no app, no HTTP) against the real test Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as redis_async
from prometheus_client import CollectorRegistry

import services.classify.handlers as handlers_module
from services.classify.handlers import (
    MAX_CLASSIFIED_CHARS,
    ClassifyEntries,
    ClassifyMetrics,
    DryRunError,
    TaxonomyAnnouncer,
    dry_run,
)
from services.classify.reload import ClassifierHolder
from services.common.consumer import DeadLetters, Entry
from services.common.models import (
    Article,
    ArticleSubmission,
    ClassifiedArticle,
    DeadLetter,
    content_hash_for,
)
from services.common.streams import DATA_FIELD, GROUP_CLASSIFY, StreamNames

TITLE = "Turkey takes delivery of the second S-400 battery from Russia"
BODY = (
    "ANKARA - Turkey has received the second battery of the Russian S-400 air defence "
    "system, the defence ministry said on Tuesday, despite warnings from NATO allies. "
    "The delivery completes the $2.5 billion contract signed with Moscow in 2017."
)


def entry(entry_id: str, data: bytes | None) -> Entry:
    fields = {DATA_FIELD.encode(): data} if data is not None else {}
    return Entry(id=entry_id, data=data, fields=fields)


def article() -> Article:
    return Article(
        id="art_s400", title=TITLE, body=BODY, content_hash=content_hash_for(TITLE, BODY)
    )


@pytest.fixture(scope="module")
def holder() -> ClassifierHolder:
    return ClassifierHolder(None, registry=CollectorRegistry())


async def test_a_batch_is_classified_and_a_bad_entry_dead_lettered(
    aredis: redis_async.Redis, holder: ClassifierHolder
) -> None:
    names = StreamNames("hx")
    registry = CollectorRegistry()
    handle = ClassifyEntries(
        redis=aredis,
        names=names,
        holder=holder,
        dead_letters=DeadLetters(aredis, names.dead_letters),
        metrics=ClassifyMetrics(registry),
    )
    good = entry("1-1", article().model_dump_json().encode())
    bad = entry("1-2", b'{"type": "article", "title": 7}')

    done = await handle([good, bad])

    assert done == ["1-1", "1-2"]  # both may be acked: one published, one dead-lettered
    [(_, fields)] = await aredis.xrange(names.classified)
    classified = ClassifiedArticle.model_validate_json(fields[DATA_FIELD.encode()])
    assert classified.article.id == "art_s400"
    assert "air-defence-procurement" in classified.topic_ids()
    assert any(e.id == "system:s-400" for e in classified.entities)
    assert classified.taxonomy_version == holder.current.version

    [(_, fields)] = await aredis.xrange(names.dead_letters)
    letter = DeadLetter.model_validate_json(fields[DATA_FIELD.encode()])
    assert (letter.stream, letter.group, letter.entry_id) == (
        names.accepted,
        GROUP_CLASSIFY,
        "1-2",
    )
    assert letter.reason.startswith("invalid article") and "title" in letter.reason
    sample = registry.get_sample_value
    assert sample("topicwatch_classify_articles_total", {"outcome": "tagged"}) == 1.0
    assert sample("topicwatch_classify_articles_total", {"outcome": "invalid"}) == 1.0


async def test_the_taxonomy_is_announced_once_per_version(
    aredis: redis_async.Redis, holder: ClassifierHolder
) -> None:
    names = StreamNames("hx")
    announcer = TaxonomyAnnouncer(redis=aredis, names=names, holder=holder)
    assert await announcer.announce() is True
    announced = json.loads(await aredis.get(names.taxonomy))
    assert announced["version"] == holder.current.version
    assert "air-defence-procurement" in announced["topics"]
    await aredis.delete(names.taxonomy)
    assert await announcer.announce() is False  # same version: nothing written
    assert await aredis.get(names.taxonomy) is None


async def test_dry_run_names_the_missing_field(holder: ClassifierHolder) -> None:
    answer = await dry_run(holder, ArticleSubmission(title=TITLE, body=BODY), explain=True)
    assert "air-defence-procurement" in [t["id"] for t in answer["topics"]]
    assert any(d["id"] == "air-defence-procurement" and d["tagged"] for d in answer["details"])
    with pytest.raises(DryRunError) as info:
        await dry_run(holder, ArticleSubmission(title=TITLE, body="   "))
    assert info.value.field == "body"


def handler(
    aredis: redis_async.Redis, holder: ClassifierHolder, names: StreamNames
) -> ClassifyEntries:
    return ClassifyEntries(
        redis=aredis,
        names=names,
        holder=holder,
        dead_letters=DeadLetters(aredis, names.dead_letters),
        metrics=ClassifyMetrics(CollectorRegistry()),
    )


#: Common-English filler with no defence vocabulary (a long article's unrelated middle).
FILLER = "The committee met on a rainy afternoon and discussed the weather at length. "


async def test_a_long_article_is_classified_by_its_opening_and_published_whole(
    aredis: redis_async.Redis, holder: ClassifierHolder
) -> None:
    """Classification grows with the text and runs on the event loop: only the first
    MAX_CLASSIFIED_CHARS characters are read. The S-400 story placed after a long opening is
    not seen (its entities are, uncapped), and the article is still published in full."""
    uncapped = holder.current.classify("Committee notes", FILLER * 700 + BODY)
    assert any(e.id == "system:s-400" for e in uncapped.entities)
    names = StreamNames("hlong")
    body = FILLER * 700 + BODY  # 53,000 characters, the story after the cap
    assert len(body) > MAX_CLASSIFIED_CHARS > len(FILLER * 650)
    early = FILLER * 100 + BODY  # the same story within the cap
    long_one = Article(
        id="art_long", title="Committee notes", body=body, content_hash=content_hash_for("t", body)
    )
    short_one = Article(
        id="art_early",
        title="Committee notes",
        body=early,
        content_hash=content_hash_for("t", early),
    )
    done = await handler(aredis, holder, names)(
        [
            entry("1-1", long_one.model_dump_json().encode()),
            entry("1-2", short_one.model_dump_json().encode()),
        ]
    )
    assert done == ["1-1", "1-2"]
    published = [
        ClassifiedArticle.model_validate_json(fields[DATA_FIELD.encode()])
        for _, fields in await aredis.xrange(names.classified)
    ]
    assert [c.article.body for c in published] == [body, early]
    assert published[0].topics == [] and published[0].entities == []
    assert any(e.id == "system:s-400" for e in published[1].entities)
    answer = await dry_run(holder, ArticleSubmission(title="Committee notes", body=body))
    assert answer["topics"] == [] and answer["entities"] == []


async def test_the_event_loop_runs_between_the_articles_of_a_batch(
    aredis: redis_async.Redis, holder: ClassifierHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch gives the loop back once it has run for YIELD_AFTER_SECONDS (here 0: after
    every article), so probes and the API wait at most for one article. Counted in ticks
    of a concurrent task while the batch is handled, not timed."""
    monkeypatch.setattr(handlers_module, "YIELD_AFTER_SECONDS", 0.0)
    names = StreamNames("hyield")
    batch = [entry(f"1-{n}", article().model_dump_json().encode()) for n in range(6)]
    ticks = 0
    done_event = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done_event.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    done = await handler(aredis, holder, names)(batch)
    during = ticks - before
    done_event.set()
    await task
    assert len(done) == 6 and await aredis.xlen(names.classified) == 6
    # One tick per article's yield, plus those of the pipeline's own awaits.
    assert during >= 6
