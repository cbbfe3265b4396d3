"""Near-duplicate stories: the signature functions, the threshold, and the shared Redis state."""

from __future__ import annotations

import asyncio
import itertools
import random

import numpy as np
import pytest
import redis.asyncio as redis_async

from services.notify.neardup import (
    BANDS,
    DEFAULT_TTL,
    NUM_PERM,
    THRESHOLD,
    RedisNearDuplicates,
    band_digests,
    jaccard,
    shingles,
    signature,
    similarity,
)

FILLER = ["the", "a", "officials", "said", "new", "report", "on", "its"]


def republish(body: str, rng: random.Random, word_edits: int, drop_paragraph: bool) -> str:
    """What another outlet does to wire copy: cut a paragraph, change a few words."""
    paragraphs = body.split("\n\n")
    if drop_paragraph and len(paragraphs) > 2:
        paragraphs.pop(rng.randrange(1, len(paragraphs)))
    words = "\n\n".join(paragraphs).split(" ")
    for _ in range(word_edits):
        words[rng.randrange(len(words))] = rng.choice(FILLER)
    return " ".join(words)


@pytest.fixture(scope="module")
def wire_stories(dev_articles: list[dict]) -> list[dict]:
    """Wire-length stories (four paragraphs or more): what outlets republish with a paragraph
    cut. The shared samples all are; of the classifier's own examples, the longer ones."""
    stories = [
        a
        for a in dev_articles
        if len(a["body"].split("\n\n")) >= 4 and len(a["body"].split()) >= 100
    ]
    assert len(stories) >= 8
    return stories


# --- pure functions ---------------------------------------------------------------------------


def test_shingles_are_word_trigrams_of_the_body_tokens() -> None:
    body = "Poland signs a deal for 48 more Patriot launchers in the second phase of Wisla. " * 3
    got = shingles("Headline ignored", body)
    assert "poland signs a" in got and "patriot launchers in" in got
    assert not any("headline" in s for s in got)
    # Punctuation and case do not matter, as for queries.
    assert shingles("", "Air-Defence, SYSTEMS; vital") == shingles("", "air defence systems vital")


def test_short_bodies_are_shingled_with_their_title() -> None:
    got = shingles("Turkey tests S-400 radar", "Brief.")
    assert "turkey tests s" in got and "radar brief" not in got  # trigram, not bigram
    assert "400 radar brief" in got
    assert shingles("", "") == set()
    assert shingles("", "one two") == {"one two"}


def test_signature_is_deterministic_and_estimates_jaccard(wire_stories: list[dict]) -> None:
    a, b = wire_stories[0], wire_stories[1]
    sig_a = signature(a["title"], a["body"])
    assert sig_a.dtype == np.uint32 and sig_a.shape == (NUM_PERM,)
    assert np.array_equal(sig_a, signature("another title", a["body"]))  # titles are ignored
    assert similarity(sig_a, sig_a) == 1.0
    rng = random.Random(5)
    for edits in (0, 5, 20):
        copy = republish(a["body"], rng, edits, drop_paragraph=True)
        exact = jaccard(shingles("", a["body"]), shingles("", copy))
        estimate = similarity(sig_a, signature("", copy))
        assert abs(estimate - exact) < 0.15, (edits, exact, estimate)
    assert similarity(sig_a, signature(b["title"], b["body"])) < 0.1


def test_band_digests() -> None:
    sig = signature("", "one two three four five six seven eight nine ten")
    digests = band_digests(sig)
    assert len(digests) == BANDS and len(set(digests)) == BANDS
    changed = sig.copy()
    changed[0] += 1  # only the first band changes
    assert band_digests(changed)[1:] == digests[1:]
    assert band_digests(changed)[0] != digests[0]


def test_threshold_separates_copies_from_different_stories(wire_stories: list[dict]) -> None:
    """How near is near, pinned on the samples: edited copies above, other stories far below."""
    rng = random.Random(11)
    for art in wire_stories[:12]:
        original = signature(art["title"], art["body"])
        light = republish(art["body"], rng, word_edits=5, drop_paragraph=True)
        assert similarity(original, signature("Other headline", light)) >= THRESHOLD, art["id"]
    sets = [shingles(a["title"], a["body"]) for a in wire_stories]
    most_similar = max(jaccard(x, y) for x, y in itertools.combinations(sets, 2))
    # Different stories of one beat share phrases ("S-400 air defence system"): 0.03 at most
    # on the shared samples, 0.13 on the classifier's own; far below the threshold either way.
    assert most_similar < THRESHOLD / 2


# --- Redis-backed clusters --------------------------------------------------------------------


@pytest.fixture
def story(wire_stories: list[dict]) -> dict:
    return wire_stories[0]


async def test_copies_point_at_the_first_article(aredis: redis_async.Redis, story: dict) -> None:
    index = RedisNearDuplicates(aredis, prefix="t1")
    rng = random.Random(3)
    first = await index.check("art_a", story["title"], story["body"])
    assert first.original_id == "art_a" and not first.is_duplicate and first.similarity == 1.0
    copy = republish(story["body"], rng, word_edits=4, drop_paragraph=True)
    second = await index.check("art_b", "Another outlet's headline", copy)
    assert second.is_duplicate and second.original_id == "art_a"
    assert THRESHOLD <= second.similarity < 1.0
    # A copy of the copy still belongs to the first article's story.
    third = await index.check(
        "art_c", "x", republish(copy, rng, word_edits=3, drop_paragraph=False)
    )
    assert third.original_id == "art_a"
    # A different story starts its own cluster.
    other = await index.check("art_z", "", "Completely different text about naval drills " * 10)
    assert other.original_id == "art_z" and not other.is_duplicate


async def test_check_is_idempotent(aredis: redis_async.Redis, story: dict) -> None:
    index = RedisNearDuplicates(aredis, prefix="t2", ttl_seconds=DEFAULT_TTL)
    await index.check("art_a", story["title"], story["body"])
    dup = await index.check("art_b", "", story["body"])
    assert dup.original_id == "art_a"
    # Asked again (a redelivered entry), even with other text, the decision stands.
    again = await index.check("art_b", "", "unrelated words entirely " * 20)
    assert again == dup
    assert await index.original_of("art_b") == dup
    assert await index.original_of("art_never") is None


async def test_expired_stories_are_forgotten_and_leave_nothing_behind(
    aredis: redis_async.Redis, story: dict
) -> None:
    """After the TTL every decision is gone, nothing of the index is left in Redis (bounded
    memory, whatever its key layout), and the story starts over."""
    index = RedisNearDuplicates(aredis, prefix="t3", ttl_seconds=1)
    await index.check("art_a", "", story["body"])
    assert (await index.check("art_b", "", story["body"])).original_id == "art_a"
    await asyncio.sleep(1.2)
    assert await index.original_of("art_a") is None
    assert await index.original_of("art_b") is None
    # A fresh database per test: all of it was the index's (SCAN skips expired keys, which
    # DBSIZE would still count until Redis reclaims them).
    assert [key async for key in aredis.scan_iter()] == []
    later = await index.check("art_c", "", story["body"])
    assert later.original_id == "art_c" and not later.is_duplicate


async def test_processes_agree_under_concurrency(redis_url: str, wire_stories: list[dict]) -> None:
    """Two clients (two notify processes) check copies of the same stories concurrently."""
    clients = [redis_async.Redis.from_url(redis_url) for _ in range(2)]
    try:
        indexes = [RedisNearDuplicates(c, prefix="t4") for c in clients]
        rng = random.Random(9)
        jobs = []
        for story_no, art in enumerate(wire_stories[:4]):
            for copy_no in range(6):
                text = republish(art["body"], rng, word_edits=3, drop_paragraph=False)
                index = indexes[copy_no % 2]
                jobs.append(index.check(f"art_{story_no}_{copy_no}", "", text))
        results = await asyncio.gather(*jobs)
        for story_no in range(4):
            decisions = [r for r in results if r.article_id.startswith(f"art_{story_no}_")]
            originals = {d.original_id for d in decisions}
            assert len(originals) == 1, originals  # one story, one original
            (original,) = originals
            assert original.startswith(f"art_{story_no}_")
            assert sum(not d.is_duplicate for d in decisions) == 1
    finally:
        for client in clients:
            await client.aclose()
