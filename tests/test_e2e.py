"""End to end: the three services as separate processes, a real Redis, a real webhook receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.streams import StreamNames
from services.notify.signing import verify
from tests.notify_receiver import Receiver
from tests.procs import ServiceProcess, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.streams]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    env = {
        "TOPICWATCH_REDIS_URL": redis_url,
        "TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS": "true",  # the receiver is on loopback
        "TOPICWATCH_API_KEYS": "test-key-1,test-key-2",
        "TOPICWATCH_READ_BLOCK_MS": "50",
        "TOPICWATCH_LOG_LEVEL": "INFO",
    }
    procs = start_stack(env, tmp_path)
    yield procs
    for proc in procs.values():
        proc.stop()


AUTH = {"Authorization": "Bearer test-key-2"}


def test_seed_article_alerts_a_subscriber_once(
    stack: dict[str, ServiceProcess], seed_article: dict, redis_url: str
) -> None:
    with Receiver() as receiver:
        created = httpx.post(
            f"{stack['notify'].url}/v1/subscriptions",
            json={
                "name": "air defence desk",
                "topics": ["air-defence-procurement"],
                "webhook_url": receiver.url,
            },
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        sub = created.json()
        assert sub["webhook_secret"].startswith("whsec_")

        started = time.monotonic()
        posted = httpx.post(f"{stack['ingest'].url}/v1/articles", json=seed_article, headers=AUTH)
        assert posted.status_code == 202, posted.text
        [result] = posted.json()["articles"]
        assert result["status"] == "accepted"
        article_id = result["id"]

        [request] = receiver.wait_for(1, timeout=5.0)
        elapsed = time.monotonic() - started
        print(f"alert arrived {elapsed:.2f}s after publishing")

        # The same article again is a duplicate and must not alert again.
        again = httpx.post(f"{stack['ingest'].url}/v1/articles", json=seed_article, headers=AUTH)
        assert again.json()["articles"][0]["status"] == "duplicate"

        msg_id = verify(request.headers, request.body, [sub["webhook_secret"]])
        payload = json.loads(request.body)
        assert payload["type"] == "alert.created"
        assert payload["data"]["alert_id"] == msg_id
        assert payload["data"]["subscription_id"] == sub["id"]
        assert payload["data"]["article"]["id"] == article_id
        assert payload["data"]["article"]["url"] == seed_article["url"]
        assert "air-defence-procurement" in {t["id"] for t in payload["data"]["topics"]}

        time.sleep(1.5)  # give a second alert every chance to (wrongly) arrive
        assert len(receiver.requests) == 1

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    names = StreamNames()
    classified = client.xrange(names.classified)
    assert len(classified) == 1
    topics = {t["id"] for t in json.loads(classified[0][1]["__data__"])["topics"]}
    assert {"air-defence-procurement", "arms-trade", "alliance-relations"} <= topics
    assert len(client.xrange(names.alerts)) == 1


def test_write_endpoints_need_an_api_key(stack: dict[str, ServiceProcess]) -> None:
    r = httpx.post(f"{stack['ingest'].url}/v1/articles", json={"title": "t", "body": "b"})
    assert r.status_code == 401
    r = httpx.post(
        f"{stack['notify'].url}/v1/subscriptions",
        json={"name": "x", "topics": ["cyber"], "webhook_url": "http://127.0.0.1:9/h"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert r.status_code == 401
    assert "wrong" not in r.text


def test_direct_stream_publisher_and_rejections(
    stack: dict[str, ServiceProcess], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    names = StreamNames()
    good = {"title": "Poland orders more Patriot batteries", "body": "Warsaw signed a deal."}
    client.xadd(names.ingest, {"__data__": json.dumps(good)})
    client.xadd(names.ingest, {"__data__": json.dumps({"body": "no title"})})
    client.xadd(names.ingest, {"__data__": "{not json"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if client.xlen(names.accepted) == 1 and client.xlen(names.rejected) == 2:
            break
        time.sleep(0.1)
    assert client.xlen(names.accepted) == 1
    rejected = [json.loads(f["__data__"]) for _, f in client.xrange(names.rejected)]
    assert [e["field"] for e in rejected[0]["errors"]] == ["title"]
    assert rejected[1]["payload"] == "{not json"
    # Everything read was acknowledged: nothing left pending in the ingest group.
    deadline = time.monotonic() + 5
    while client.xpending(names.ingest, "ingest")["pending"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.xpending(names.ingest, "ingest")["pending"] == 0


def test_entries_published_before_the_services_start_are_processed(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    names = StreamNames()
    article = {"title": "Early bird", "body": "Published before ingest ever ran."}
    client.xadd(names.ingest, {"__data__": json.dumps(article)})
    procs = start_stack({"TOPICWATCH_REDIS_URL": redis_url}, tmp_path, services=("ingest",))
    try:
        deadline = time.monotonic() + 10
        while client.xlen(names.accepted) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.xlen(names.accepted) == 1
    finally:
        for proc in procs.values():
            proc.stop()
