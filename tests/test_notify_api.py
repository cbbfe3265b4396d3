"""The notify service over HTTP: subscriptions CRUD, SSRF refusals, history, SSE, redelivery.

The app runs in uvicorn on 127.0.0.1 (its consumer, worker and API all live), fed through
the real ``articles:classified`` stream, delivering to a real local receiver.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_sync

from services.common.models import Article, ClassifiedArticle, TopicTag, alert_id_for
from services.common.settings import Settings
from services.common.streams import StreamNames, encode
from services.notify.schedule import ManualClock
from services.notify.signing import verify
from tests.notify_receiver import Receiver, serve
from tests.servers import wait_for

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def api_settings(redis_url: str, tmp_path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        read_block_ms=50,
        api_keys=KEY,
        allow_private_webhooks=True,
        webhook_retry_schedule="0,0.2,0.2",
        webhook_retry_jitter=0,
    )


@pytest.fixture
def notify(api_settings: Settings) -> Iterator[str]:
    with serve(api_settings, sse_ping_seconds=0.3) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


WORDS = (
    "ankara moscow delivery battery radar missile contract navy army drill border treaty "
    "sanctions ministry export launcher interceptor satellite cyber summit alliance budget "
    "frigate drone tank artillery pilot training exercise parliament embassy spokesman"
).split()


def story_body(n: int) -> str:
    """A body of its own for each n: different stories must not look like near-duplicates."""
    rng = random.Random(n)
    return " ".join(rng.choice(WORDS) for _ in range(80))


def publish(
    redis_url: str,
    n: int,
    topic: str = "air-defence-procurement",
    *,
    body: str | None = None,
    source: str = "example",
) -> str:
    article = Article(
        id=f"art_{n:024d}",
        title=f"Story {n}: Turkey takes S-400 batch",
        body=body if body is not None else story_body(n),
        content_hash=f"h{n}",
        source=source,
        url=f"https://{source}.example/{n}",
    )
    classified = ClassifiedArticle(
        article=article, topics=[TopicTag(id=topic, score=0.9)], taxonomy_version="test"
    )
    client = redis_sync.Redis.from_url(redis_url)
    client.xadd(StreamNames().classified, encode(classified))
    client.close()
    return article.id


def test_subscription_crud_and_auth(notify: str) -> None:
    body = {"name": "desk", "topics": ["air-defence-procurement"], "query": '"S-400" -rumour'}
    assert httpx.post(f"{notify}/v1/subscriptions", json=body).status_code == 401
    created = httpx.post(f"{notify}/v1/subscriptions", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["read_token"].startswith("swr_")
    sid = sub["id"]

    shown = httpx.get(f"{notify}/v1/subscriptions/{sid}", headers=AUTH).json()
    assert "read_token" not in shown and "webhook_secret" not in shown
    assert shown["query"] == '"S-400" -rumour'
    assert httpx.get(f"{notify}/v1/subscriptions/{sid}").status_code == 401

    for n in range(2):
        httpx.post(f"{notify}/v1/subscriptions", json={**body, "name": f"d{n}"}, headers=AUTH)
    page = httpx.get(f"{notify}/v1/subscriptions?limit=2&offset=1", headers=AUTH).json()
    assert page["total"] == 3 and [s["name"] for s in page["subscriptions"]] == ["d0", "d1"]

    patched = httpx.patch(
        f"{notify}/v1/subscriptions/{sid}",
        json={"name": "renamed", "delivery": "digest", "digest_interval_minutes": 60},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "renamed" and patched.json()["delivery"] == "digest"

    bad = httpx.patch(
        f"{notify}/v1/subscriptions/{sid}", json={"query": "(S-400 AND"}, headers=AUTH
    )
    assert bad.status_code == 422 and "query" in bad.text
    no_interval = httpx.patch(
        f"{notify}/v1/subscriptions/{sid}",
        json={"digest_interval_minutes": None},
        headers=AUTH,
    )
    assert no_interval.status_code == 422, no_interval.text
    assert no_interval.json()["detail"][0]["field"] == "digest_interval_minutes"

    both = httpx.post(
        f"{notify}/v1/subscriptions",
        json={**body, "webhook_url": "http://127.0.0.1:9/h", "email": "a@example.org"},
        headers=AUTH,
    )
    assert both.status_code == 422 and "email" in both.text

    assert httpx.delete(f"{notify}/v1/subscriptions/{sid}", headers=AUTH).status_code == 204
    assert httpx.get(f"{notify}/v1/subscriptions/{sid}", headers=AUTH).status_code == 404


def test_private_webhooks_are_refused_at_creation(redis_url: str, tmp_path) -> None:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, allow_private_webhooks=False)
    with serve(settings) as url:
        for target, why in [
            ("http://127.0.0.1:8080/hook", "loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://10.0.0.7/hook", "private"),
            ("http://169.254.169.254/latest/meta-data/", "metadata"),
            ("http://[::ffff:192.168.0.1]/", "private"),
            ("ftp://example.com/hook", "http"),
        ]:
            r = httpx.post(
                f"{url}/v1/subscriptions",
                json={"name": "x", "topics": ["cyber"], "webhook_url": target},
            )
            assert r.status_code == 422, (target, r.text)
            assert "webhook_url" in r.text and why in r.text, (target, r.text)


def parse_sse(lines: list[str]) -> tuple[list[dict[str, str]], list[str]]:
    events, comments, current = [], [], {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            comments.append(line)
        else:
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")
    return events, comments


async def read_events(
    url: str, headers: dict[str, str], want: int, on_open: Any = None, since: str | None = None
) -> tuple[list[dict[str, str]], list[str]]:
    lines: list[str] = []
    params = {"since": since} if since is not None else None
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", url, headers=headers, params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            if on_open:
                on_open()
            async with asyncio.timeout(10):
                async for line in response.aiter_lines():
                    lines.append(line)
                    events, comments = parse_sse(lines)
                    if len(events) >= want and comments:
                        return events, comments
    raise AssertionError(f"stream ended early: {lines}")


def test_alerts_history_and_live_stream(notify: str, receiver: Receiver, redis_url: str) -> None:
    created = httpx.post(
        f"{notify}/v1/subscriptions",
        json={"name": "desk", "topics": ["air-defence-procurement"], "webhook_url": receiver.url},
        headers=AUTH,
    ).json()
    sid, token = created["id"], created["read_token"]
    publish(redis_url, 1)
    publish(redis_url, 2)
    publish(redis_url, 1)  # the same article again: no second alert
    publish(redis_url, 9, topic="cyber")  # not matching
    publish(redis_url, 3)
    # One subscription's alerts are delivered in the order of their entries, so a second alert
    # for article 1 would arrive before the one for article 3: three requests, in this order,
    # show it was never sent.
    requests = receiver.wait_for(3)
    secret = created["webhook_secret"]
    alert_ids = [verify(r.headers, r.body, [secret]) for r in requests]
    assert [r.json()["data"]["article"]["id"] for r in requests] == [
        f"art_{n:024d}" for n in (1, 2, 3)
    ]

    reader = {"Authorization": f"Bearer {token}"}
    got = httpx.get(f"{notify}/v1/subscriptions/{sid}/alerts", headers=reader)
    assert got.status_code == 200, got.text
    history = got.json()
    assert [a["id"] for a in history["alerts"]] == alert_ids
    after_first = httpx.get(
        f"{notify}/v1/subscriptions/{sid}/alerts",
        params={"since": alert_ids[0], "limit": 1, "token": token},
    ).json()
    assert [a["id"] for a in after_first["alerts"]] == [alert_ids[1]]
    assert after_first["next_since"] == alert_ids[1]
    assert httpx.get(f"{notify}/v1/subscriptions/{sid}/alerts").status_code == 401
    wrong = {"Authorization": "Bearer swr_wrong"}
    assert httpx.get(f"{notify}/v1/subscriptions/{sid}/alerts", headers=wrong).status_code == 401
    bad_since = httpx.get(
        f"{notify}/v1/subscriptions/{sid}/alerts", params={"since": "yesterday"}, headers=reader
    )
    assert bad_since.status_code == 422 and "since" in bad_since.text

    # Reconnect with Last-Event-ID = first alert: alerts 2 and 3 are replayed, then the
    # stream goes live and carries alert 4, published after the connection opened.
    events, comments = asyncio.run(
        read_events(
            f"{notify}/v1/subscriptions/{sid}/stream",
            {**reader, "Last-Event-ID": alert_ids[0]},
            want=3,
            on_open=lambda: publish(redis_url, 4),
        )
    )
    assert [e["event"] for e in events] == ["alert"] * 3
    assert [e["id"] for e in events[:2]] == alert_ids[1:]
    live = json.loads(events[2]["data"])
    assert live["article"]["id"] == f"art_{4:024d}" and events[2]["id"] == live["id"]
    assert comments  # keep-alive comments
    # And still no second webhook for article 1, with article 4 delivered after it.
    delivered = [r.json()["data"]["article"]["id"] for r in receiver.wait_for(4)]
    assert delivered == [f"art_{n:024d}" for n in (1, 2, 3, 4)]


def test_live_stream_outlives_the_redis_socket_timeout(
    api_settings: Settings, redis_url: str
) -> None:
    """An idle stream stays open and live: its blocking reads never outlast the Redis
    client's socket timeout (redis-py 8 defaults to 5 s, here 0.3 s to keep the test short),
    which used to end every stream that had no alert for that long."""
    settings = api_settings.model_copy(update={"redis_url": f"{redis_url}?socket_timeout=0.3"})
    with serve(settings, sse_ping_seconds=1.0) as url:
        created = httpx.post(
            f"{url}/v1/subscriptions", json={"name": "idle", "topics": ["cyber"]}, headers=AUTH
        ).json()

        def idle_then_publish() -> None:
            time.sleep(1.5)  # several socket timeouts with nothing to read
            publish(redis_url, 41, topic="cyber")

        events, comments = asyncio.run(
            read_events(
                f"{url}/v1/subscriptions/{created['id']}/stream",
                {"Authorization": f"Bearer {created['read_token']}"},
                want=1,
                on_open=idle_then_publish,
            )
        )
    assert json.loads(events[0]["data"])["article"]["id"] == f"art_{41:024d}"
    assert comments


def test_redeliver_and_secret_rotation(notify: str, receiver: Receiver, redis_url: str) -> None:
    created = httpx.post(
        f"{notify}/v1/subscriptions",
        json={"name": "desk", "topics": ["air-defence-procurement"], "webhook_url": receiver.url},
        headers=AUTH,
    ).json()
    sid, old = created["id"], created["webhook_secret"]
    publish(redis_url, 1)
    [first] = receiver.wait_for(1)
    alert_id = first.headers["webhook-id"]

    rotated = httpx.post(f"{notify}/v1/subscriptions/{sid}/rotate-secret", headers=AUTH).json()
    new = rotated["webhook_secret"]
    assert new != old and len(rotated["previous_secrets_valid_until"]) == 1

    assert httpx.post(f"{notify}/v1/alerts/{alert_id}/redeliver").status_code == 401
    r = httpx.post(f"{notify}/v1/alerts/{alert_id}/redeliver", headers=AUTH)
    assert r.status_code == 202
    _, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == alert_id
    assert len(again.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        assert verify(again.headers, again.body, [secret]) == alert_id
    detail = httpx.get(f"{notify}/v1/alerts/{alert_id}", headers=AUTH).json()
    assert [a["status"] for a in detail["attempts"]] == ["delivered"]
    assert httpx.post(f"{notify}/v1/alerts/alt_nope/redeliver", headers=AUTH).status_code == 404


def edited(body: str, every: int = 20) -> str:
    """A light edit of a syndicated story: one word in ``every`` changed."""
    words = body.split()
    return " ".join("amended" if i % every == 5 else w for i, w in enumerate(words))


def test_near_duplicate_story_alerts_once_listing_other_outlets(
    notify: str, receiver: Receiver, redis_url: str
) -> None:
    created = httpx.post(
        f"{notify}/v1/subscriptions",
        json={"name": "desk", "topics": ["air-defence-procurement"], "webhook_url": receiver.url},
        headers=AUTH,
    ).json()
    body = story_body(1)
    publish(redis_url, 1, body=body, source="wire")
    [first] = receiver.wait_for(1)
    publish(redis_url, 2, body=edited(body), source="othernews")  # the same story, re-run
    publish(redis_url, 3)  # a different story, published after it
    _, second = receiver.wait_for(2)
    assert second.json()["data"]["article"]["id"] == f"art_{3:024d}"
    alert_id = first.headers["webhook-id"]
    detail = httpx.get(f"{notify}/v1/alerts/{alert_id}", headers=AUTH).json()
    [other] = detail["alert"]["also_reported_by"]
    assert other["id"] == f"art_{2:024d}" and other["source"] == "othernews"
    history = httpx.get(
        f"{notify}/v1/subscriptions/{created['id']}/alerts",
        params={"token": created["read_token"]},
    ).json()["alerts"]
    assert [a["article"]["id"] for a in history] == [f"art_{n:024d}" for n in (1, 3)]
    assert history[0]["also_reported_by"][0]["source"] == "othernews"
    # The live stream's catch-up shows the alert as it is now, other outlet included.
    events, _ = asyncio.run(
        read_events(
            f"{notify}/v1/subscriptions/{created['id']}/stream",
            {"Authorization": f"Bearer {created['read_token']}"},
            want=2,
            since="0",
        )
    )
    replayed = [json.loads(e["data"]) for e in events]
    assert [a["article"]["id"] for a in replayed] == [f"art_{n:024d}" for n in (1, 3)]
    assert replayed[0]["also_reported_by"][0]["source"] == "othernews"


def test_digest_waiting_alert_goes_out_with_the_outlets_found_meanwhile(
    api_settings: Settings, receiver: Receiver, redis_url: str
) -> None:
    clock = ManualClock()
    with serve(api_settings, clock=clock) as notify:
        created = httpx.post(
            f"{notify}/v1/subscriptions",
            json={
                "name": "daily",
                "topics": ["air-defence-procurement"],
                "webhook_url": receiver.url,
                "delivery": "digest",
                "digest_interval_minutes": 60,
            },
            headers=AUTH,
        ).json()
        body = story_body(7)
        publish(redis_url, 7, body=body, source="wire")
        publish(redis_url, 8, body=edited(body), source="othernews")
        alert_id = alert_id_for(created["id"], f"art_{7:024d}")
        wait_for(
            lambda: (
                httpx.get(f"{notify}/v1/alerts/{alert_id}", headers=AUTH)
                .json()
                .get("alert", {})
                .get("also_reported_by")
            )
        )
        assert receiver.requests == []  # the digest window is still open
        clock.advance(minutes=60)
        [request] = receiver.wait_for(1)
        data = request.json()["data"]
        assert data["alert_id"] == alert_id
        assert [a["source"] for a in data["also_reported_by"]] == ["othernews"]


def test_unknown_topics_are_refused_once_classify_has_announced_its_taxonomy(
    notify: str, redis_client: redis_sync.Redis
) -> None:
    body = {"name": "typo", "topics": ["air-defense-procurment"]}
    # Before classify ever ran there is nothing to check against: accepted.
    assert httpx.post(f"{notify}/v1/subscriptions", json=body, headers=AUTH).status_code == 201
    redis_client.set(
        StreamNames().taxonomy,
        json.dumps({"version": "t1", "topics": ["air-defence-procurement", "cyber"]}),
    )
    refused = httpx.post(f"{notify}/v1/subscriptions", json=body, headers=AUTH)
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["field"] == "topics"
    assert "air-defense-procurment" in error["message"]
    assert "air-defence-procurement" in error["message"]  # the known ids are listed
    ok = {"name": "fine", "topics": ["cyber"]}
    created = httpx.post(f"{notify}/v1/subscriptions", json=ok, headers=AUTH)
    assert created.status_code == 201
    patched = httpx.patch(
        f"{notify}/v1/subscriptions/{created.json()['id']}",
        json={"topics": ["cyber", "nope"]},
        headers=AUTH,
    )
    assert patched.status_code == 422


def test_request_validation_errors_name_the_field_like_every_other_error(notify: str) -> None:
    bad = httpx.post(
        f"{notify}/v1/subscriptions",
        json={"name": "x", "topics": ["cyber"], "query": "(S-400 OR"},
        headers=AUTH,
    )
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["field"] == "query"
    assert error["message"].startswith("expected a word, phrase or '(' after 'OR'")
    assert "^" in error["message"]  # the caret line pointing at the error
    paged = httpx.get(f"{notify}/v1/subscriptions", params={"limit": 0}, headers=AUTH)
    assert paged.status_code == 422
    assert paged.json()["detail"][0]["field"] == "limit"
