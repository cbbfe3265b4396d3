"""Feeds inside the ingest service: registry in Redis, polling, status, metrics.

The feeds are served by a real local HTTP server (tests/feed_server.py) that honours ETag
and Last-Modified; ingest runs on a real uvicorn with a real Redis.
"""

from __future__ import annotations

import httpx

from services.common.models import Article

from .feed_server import ATOM, RSS, running_feed_server
from .ingest_server import names, running_ingest, stream_events
from .servers import wait_for


def accepted(client, settings) -> list[Article]:
    return [Article.model_validate(e) for e in stream_events(client, names(settings).accepted)]


def test_add_poll_status_and_conditional_refetch(settings, redis_client):
    with running_feed_server() as feeds, running_ingest(settings, allow_private_feeds=True) as url:
        rss = feeds.serve("/rss.xml", RSS)
        added = httpx.post(f"{url}/v1/feeds", json={"url": rss})
        assert added.status_code == 201 and added.json()["last_outcome"] == "never"
        assert httpx.post(f"{url}/v1/feeds", json={"url": rss}).status_code == 200

        # adding wakes the background poller: its first poll fetches the feed
        first = wait_for(
            lambda: [
                f
                for f in httpx.get(f"{url}/v1/feeds").json()["feeds"]
                if f["last_outcome"] != "never"
            ]
        )
        second = httpx.post(f"{url}/v1/feeds/poll").json()["feeds"]
        feeds.serve("/rss.xml", RSS.replace("dw-1002", "dw-1003"))  # one new item
        third = httpx.post(f"{url}/v1/feeds/poll").json()["feeds"]
        listed = httpx.get(f"{url}/v1/feeds").json()["feeds"]
        metrics = httpx.get(f"{url}/metrics").text

    assert first[0]["last_outcome"] == "ok" and first[0]["items_seen"] == 2
    assert first[0]["title"] == "Defence Wire" and first[0]["etag"]
    assert second[0]["last_outcome"] == "not_modified" and second[0]["items_seen"] == 2
    assert third[0]["last_outcome"] == "ok" and third[0]["items_seen"] == 3
    assert third[0]["last_items_new"] == 1
    assert listed == third
    # conditional GETs: the second poll sent the ETag and got 304
    assert [r.status for r in feeds.requests] == [200, 304, 200]
    assert feeds.requests[1].if_none_match == first[0]["etag"]

    articles = accepted(redis_client, settings)
    # dw-1003 has the same link and text as dw-1002: a new feed item, but a duplicate article
    assert len(articles) == 2
    assert {a.received_via for a in articles} == {"feed"}
    assert {a.canonical_url for a in articles} == {
        "https://defencewire.example/2023/09/19/wisla",  # utm_source dropped
        "https://defencewire.example/2023/11/09/davids-sling",
    }
    assert articles[0].metadata["feed_url"] == rss
    assert 'topicwatch_feed_polls_total{outcome="ok"} 2.0' in metrics  # first and third
    assert 'topicwatch_feed_polls_total{outcome="not_modified"} 1.0' in metrics
    assert f'topicwatch_feed_items_seen{{feed="{rss}"}} 3.0' in metrics
    assert 'topicwatch_ingest_articles_total{status="duplicate",via="feed"} 1.0' in metrics


def test_errors_are_reported_per_feed_and_removal(settings):
    with running_feed_server() as feeds, running_ingest(settings, allow_private_feeds=True) as url:
        broken = feeds.serve("/broken.xml", RSS, status=503)
        atom = feeds.serve("/atom.xml", ATOM, content_type="application/atom+xml")
        for feed in (broken, atom):
            httpx.post(f"{url}/v1/feeds", json={"url": feed})
        wait_for(
            lambda: all(
                f["last_outcome"] != "never" for f in httpx.get(f"{url}/v1/feeds").json()["feeds"]
            )
        )
        polled = {f["url"]: f for f in httpx.get(f"{url}/v1/feeds").json()["feeds"]}
        httpx.post(f"{url}/v1/feeds/poll")
        after = {f["url"]: f for f in httpx.get(f"{url}/v1/feeds").json()["feeds"]}
        metrics = httpx.get(f"{url}/metrics").text
        removed = httpx.delete(f"{url}/v1/feeds", params={"url": broken})
        again = httpx.delete(f"{url}/v1/feeds", params={"url": broken})
        remaining = [f["url"] for f in httpx.get(f"{url}/v1/feeds").json()["feeds"]]
        metrics_after = httpx.get(f"{url}/metrics").text
        invalid = httpx.post(f"{url}/v1/feeds", json={"url": "file:///etc/passwd"})

    assert polled[broken]["last_outcome"] == "error"
    assert polled[broken]["last_error"].startswith("HTTP 503")
    assert after[broken]["consecutive_errors"] == 2 and after[broken]["last_success_at"] is None
    assert polled[atom]["items_seen"] == 2 and after[atom]["last_error"] is None
    assert f'topicwatch_feed_consecutive_errors{{feed="{broken}"}} 2.0' in metrics
    assert 'topicwatch_feeds{outcome="error"} 1.0' in metrics
    assert 'topicwatch_feeds{outcome="ok"} 1.0' in metrics or (
        'topicwatch_feeds{outcome="not_modified"} 1.0' in metrics
    )
    assert removed.status_code == 200 and again.status_code == 404
    assert remaining == [atom]
    assert f'feed="{broken}"' not in metrics_after
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["field"] == "url"


def test_configured_feeds_are_polled_in_the_background(settings, redis_client):
    with running_feed_server() as feeds:
        rss = feeds.serve("/rss.xml", RSS)
        with running_ingest(
            settings, feeds=rss, feed_poll_interval=0.2, allow_private_feeds=True
        ) as url:
            wait_for(lambda: len(accepted(redis_client, settings)) == 2)
            wait_for(lambda: sum(r.status == 304 for r in feeds.requests) >= 2)
            [status] = httpx.get(f"{url}/v1/feeds").json()["feeds"]
    assert status["url"] == rss and status["items_seen"] == 2
    assert status["last_outcome"] == "not_modified"
    # every item ingested exactly once however often the feed was polled
    assert len(accepted(redis_client, settings)) == 2


def test_feeds_inside_our_network_are_refused_unless_allowed(settings):
    with running_feed_server() as feeds, running_ingest(settings) as url:
        rss = feeds.serve("/rss.xml", RSS)
        refused = httpx.post(f"{url}/v1/feeds", json={"url": rss})
        metadata = httpx.post(f"{url}/v1/feeds", json={"url": "http://169.254.169.254/feed"})
        listed = httpx.get(f"{url}/v1/feeds").json()["feeds"]
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["field"] == "url" and "127.0.0.1" in error["message"]
    assert metadata.status_code == 422 and "metadata" in metadata.json()["detail"][0]["message"]
    assert listed == [] and feeds.requests == []  # nothing was fetched
