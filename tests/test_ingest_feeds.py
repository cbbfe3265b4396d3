"""Feed fetching and parsing against a real local HTTP server serving feed files."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.common.models import ArticleSubmission
from services.common.ssrf import CheckedTarget, check_webhook_url
from services.common.submission import SubmissionError, validate_submission
from services.ingest.feeds import (
    FeedFetch,
    FeedStatus,
    ParsedFeed,
    fetch_feed,
    item_to_submission,
    parse_feed,
    record_poll,
)
from services.ingest.normalize import normalize_submission

from .feed_server import ATOM, RSS, running_feed_server


@pytest.fixture
def feed_server():
    with running_feed_server() as server:
        yield server


async def test_conditional_get_with_etag(feed_server):
    url = feed_server.serve("/rss.xml", RSS)
    async with httpx.AsyncClient(timeout=5) as client:
        first = await fetch_feed(client, url)
        assert first.outcome == "ok" and first.http_status == 200
        assert first.etag == feed_server.files["/rss.xml"].etag
        assert first.feed is not None and first.feed.title == "Defence Wire"
        assert [item.key for item in first.feed.items] == ["guid:dw-1001", "guid:dw-1002"]

        again = await fetch_feed(client, url, etag=first.etag, last_modified=first.last_modified)
        assert again.outcome == "not_modified" and again.feed is None
        assert again.etag == first.etag  # validators kept for the next poll

        feed_server.serve("/rss.xml", RSS.replace("dw-1002", "dw-1003"))
        changed = await fetch_feed(client, url, etag=first.etag)
        assert changed.outcome == "ok" and changed.etag != first.etag
    seen = feed_server.requests
    assert [r.status for r in seen] == [200, 304, 200]
    assert seen[0].if_none_match is None
    assert seen[1].if_none_match == first.etag
    assert seen[1].if_modified_since == first.last_modified


async def test_conditional_get_with_last_modified_only(feed_server):
    url = feed_server.serve("/atom.xml", ATOM, send_etag=False, content_type="application/atom+xml")
    async with httpx.AsyncClient(timeout=5) as client:
        first = await fetch_feed(client, url)
        assert first.etag is None and first.last_modified
        again = await fetch_feed(client, url, last_modified=first.last_modified)
    assert again.outcome == "not_modified"
    assert feed_server.requests[1].if_modified_since == first.last_modified


async def test_errors_are_outcomes_not_exceptions(feed_server):
    feed_server.serve("/broken.xml", RSS, status=500)
    feed_server.serve("/html.xml", "<html><body>not a feed</body></html>", content_type="text/html")
    async with httpx.AsyncClient(timeout=5) as client:
        missing = await fetch_feed(client, feed_server.url("/nope.xml"))
        broken = await fetch_feed(client, feed_server.url("/broken.xml"))
        not_feed = await fetch_feed(client, feed_server.url("/html.xml"))
        too_big = await fetch_feed(client, feed_server.serve("/big.xml", RSS), max_bytes=100)
        # nothing listens on port 1 of loopback
        refused = await fetch_feed(client, "http://127.0.0.1:1/feed.xml")
    assert (missing.outcome, missing.error) == ("error", "HTTP 404 Not Found")
    assert (broken.outcome, broken.http_status) == ("error", 500)
    assert not_feed.outcome == "error" and "not an RSS/Atom feed" in (not_feed.error or "")
    assert too_big.outcome == "error" and "larger than 100 bytes" in (too_big.error or "")
    assert refused.outcome == "error" and refused.error


def test_rss_items_become_submissions_that_normalise():
    feed = parse_feed(RSS.encode())
    payload = item_to_submission(feed.items[0], feed_url="http://feeds/rss", feed_title=feed.title)
    submission = ArticleSubmission.model_validate(payload)
    article = normalize_submission(submission, received_via="feed")
    assert article.title == "Poland signs Wisla phase two deal"
    assert article.body.startswith("WARSAW, Sept 19 (Defence Wire) - Poland signed")
    assert "\n\nThe package adds 48 Patriot launchers." in article.body
    assert article.canonical_url == "https://defencewire.example/2023/09/19/wisla"
    assert article.published_at == datetime(2023, 9, 19, 12, 20, tzinfo=UTC)
    assert article.source == "Defence Wire"
    assert article.external_id == "dw-1001"
    assert article.metadata == {
        "feed_url": "http://feeds/rss",
        "feed_item": "guid:dw-1001",
        "feed_title": "Defence Wire",
    }
    assert article.received_via == "feed"


def test_atom_items_including_headline_only_ones():
    feed = parse_feed(ATOM.encode())
    assert feed.title == "Orbital Security Report"
    first, headline = feed.items
    assert first.author == "Dana Reyes"
    assert first.published == datetime(2021, 11, 16, 1, 45, tzinfo=UTC)
    payload = item_to_submission(headline, feed_url="u", feed_title=feed.title)
    assert payload["body"] == "Headline only item"
    assert payload["metadata"]["body_from"] == "title"
    article = normalize_submission(ArticleSubmission.model_validate(payload), received_via="feed")
    assert article.body == "Headline only item"


def test_item_without_title_does_not_validate_and_can_be_rejected_with_its_payload():
    rss = RSS.replace("<title>Finland picks David's Sling</title>", "")
    feed = parse_feed(rss.encode())
    payload = item_to_submission(feed.items[1], feed_url="u", feed_title=feed.title)
    assert payload["title"] is None
    with pytest.raises(SubmissionError, match="title: required"):
        validate_submission(payload)  # what every ingest path validates with


def test_record_poll_tracks_success_errors_and_items():
    status = FeedStatus(url="http://x/feed")
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    ok = FeedFetch(outcome="ok", feed=ParsedFeed(title="X"), etag='"a"', last_modified="lm")
    status = record_poll(status, ok, new_items=3, now=t1)
    assert (status.last_outcome, status.items_seen, status.etag, status.title) == (
        "ok",
        3,
        '"a"',
        "X",
    )
    assert status.last_success_at == t1
    failed = FeedFetch(outcome="error", error="HTTP 500")
    t2 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    status = record_poll(status, failed, now=t2)
    status = record_poll(status, failed, now=t2)
    assert (status.last_error, status.consecutive_errors, status.last_success_at) == (
        "HTTP 500",
        2,
        t1,
    )
    assert status.etag == '"a"'  # an error keeps the validators of the last good fetch
    status = record_poll(
        status, FeedFetch(outcome="not_modified", etag='"a"', last_modified="lm"), now=t2
    )
    assert (status.consecutive_errors, status.items_seen, status.last_outcome) == (
        0,
        3,
        "not_modified",
    )


async def test_relative_item_links_resolve_against_the_feed_address(feed_server):
    rss = RSS.replace(
        "https://defencewire.example/2023/11/09/davids-sling", "/2023/11/09/davids-sling"
    )
    url = feed_server.serve("/feeds/rss.xml", rss)
    async with httpx.AsyncClient(timeout=5) as client:
        fetched = await fetch_feed(client, url)
    assert fetched.feed is not None
    assert fetched.feed.items[1].link == feed_server.url("/2023/11/09/davids-sling")


async def test_redirects_are_followed_and_every_hop_is_checked(feed_server):
    target = feed_server.serve("/feeds/rss.xml", RSS)
    moved = feed_server.serve("/old.xml", "", status=301, location="/feeds/rss.xml")
    checked: list[str] = []

    async def allow_all(url: str) -> CheckedTarget:
        checked.append(url)
        return await check_webhook_url(url, allow_private=True)

    async def refuse_new_home(url: str) -> CheckedTarget:
        if url.endswith("/feeds/rss.xml"):
            raise ValueError("host 127.0.0.1 is not allowed")
        return await check_webhook_url(url, allow_private=True)

    async with httpx.AsyncClient(timeout=5) as client:
        followed = await fetch_feed(client, moved, guard=allow_all)
        refused = await fetch_feed(client, moved, guard=refuse_new_home)
        looping = await fetch_feed(
            client, feed_server.serve("/loop.xml", "", status=302, location="/loop.xml")
        )
    assert followed.outcome == "ok" and checked == [moved, target]
    assert followed.feed is not None and len(followed.feed.items) == 2
    assert (
        refused.outcome == "error"
        and refused.error == f"refused {target}: host 127.0.0.1 is not allowed"
    )
    assert looping.outcome == "error" and looping.error == "more than 5 redirects"
    # the refused hop was never requested
    assert [r.path for r in feed_server.requests].count("/feeds/rss.xml") == 1
