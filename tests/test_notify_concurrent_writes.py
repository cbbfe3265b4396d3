"""Concurrent writes to a subscription end in the state the last writer meant (issue 9, #6).

The races are driven deterministically with a real slow receiver: it holds the webhook
request until the test has PATCHed or DELETEd the subscription through the real API (notify
in uvicorn, real Redis), then answers 410 Gone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from services.common.settings import Settings
from services.common.streams import StreamNames
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate
from tests.notify_receiver import Receiver, Reply, serve
from tests.servers import wait_for
from tests.test_notify_api import publish

KEY = "race-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def notify(redis_url: str, tmp_path) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        read_block_ms=50,
        api_keys=KEY,
        allow_private_webhooks=True,
        webhook_retry_schedule="0,0.2,0.2",
        webhook_retry_jitter=0,
    )
    with serve(settings) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def subscribe(notify: str, webhook_url: str) -> str:
    body = {"name": "desk", "topics": ["air-defence-procurement"], "webhook_url": webhook_url}
    created = httpx.post(f"{notify}/v1/subscriptions", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def shown(notify: str, sid: str) -> httpx.Response:
    return httpx.get(f"{notify}/v1/subscriptions/{sid}", headers=AUTH)


def dead_letters(redis_url: str) -> list[Any]:
    client = redis_sync.Redis.from_url(redis_url)
    try:
        return list(client.xrange(StreamNames().alerts_dead))
    finally:
        client.close()


def held_410(receiver: Receiver) -> threading.Event:
    release = threading.Event()
    receiver.reply(Reply(410, body=b"unsubscribed", hold=release))
    return release


def test_a_patch_during_a_send_that_ends_in_410_is_kept(
    notify: str, receiver: Receiver, redis_url: str
) -> None:
    """Before: the worker wrote back its pre-send copy with disabled=true: the rename was lost."""
    sid = subscribe(notify, receiver.url)
    release = held_410(receiver)
    publish(redis_url, 1)
    receiver.wait_for(1)  # the worker is inside the send now, holding its copy
    patched = httpx.patch(
        f"{notify}/v1/subscriptions/{sid}",
        json={"name": "renamed", "min_score": 0.5},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.text
    release.set()
    final = wait_for(lambda: (s := shown(notify, sid).json()).get("disabled") and s)
    assert final["name"] == "renamed" and final["min_score"] == 0.5  # the PATCH survives
    assert "410" in final["disabled_reason"]  # and so does the disable, written after it


def test_a_delete_during_a_send_that_ends_in_410_stays_deleted(
    notify: str, receiver: Receiver, redis_url: str
) -> None:
    """Before: the disable wrote the whole subscription back, resurrecting it (and its index
    entry) after its owner deleted it."""
    sid = subscribe(notify, receiver.url)
    release = held_410(receiver)
    publish(redis_url, 1)
    receiver.wait_for(1)
    assert httpx.delete(f"{notify}/v1/subscriptions/{sid}", headers=AUTH).status_code == 204
    release.set()
    dead = wait_for(lambda: dead_letters(redis_url))  # the worker has handled the 410
    assert len(dead) == 1
    assert shown(notify, sid).status_code == 404
    listing = httpx.get(f"{notify}/v1/subscriptions", headers=AUTH).json()
    assert listing["total"] == 0 and listing["subscriptions"] == []


def test_a_new_endpoint_set_during_a_send_is_not_disabled_by_the_old_ones_410(
    notify: str, receiver: Receiver, redis_url: str
) -> None:
    """The owner moved the webhook while the old endpoint was answering 410: the owner wrote
    last and meant the new endpoint, so the subscription stays enabled and the alert goes
    there (same webhook-id)."""
    sid = subscribe(notify, receiver.url)
    release = held_410(receiver)
    publish(redis_url, 1)
    first = receiver.wait_for(1)[0]
    with Receiver() as new_home:
        moved = httpx.patch(
            f"{notify}/v1/subscriptions/{sid}",
            json={"webhook_url": new_home.url},
            headers=AUTH,
        )
        assert moved.status_code == 200, moved.text
        release.set()
        delivered = new_home.wait_for(1)[0]
    assert delivered.headers["webhook-id"] == first.headers["webhook-id"]
    final = shown(notify, sid).json()
    assert final["disabled"] is False and final["webhook_url"] == new_home.url
    assert dead_letters(redis_url) == []


async def test_update_applies_the_change_again_after_a_concurrent_write(
    aredis: aioredis.Redis, redis_url: str
) -> None:
    """Read-modify-write (PATCH, rotation, disable) against a write between read and write:
    WATCH fails the first transaction and the change is applied to the newer version."""
    store = SubscriptionStore(aredis, StreamNames())
    sub = Subscription.create(SubscriptionCreate(name="desk", topics=["air-defence-procurement"]))
    await store.put(sub)
    other = redis_sync.Redis.from_url(redis_url)
    calls: list[str] = []

    def change(current: Subscription) -> Subscription:
        calls.append(current.name)
        if len(calls) == 1:  # another writer lands between our read and our write
            renamed = current.model_copy(update={"name": "other writer"})
            other.set(store._key(sub.id), renamed.model_dump_json())
        return current.model_copy(update={"min_score": 0.5})

    version = await store.version()
    written = await store.update(sub.id, change)
    stored = await store.get(sub.id)
    assert calls == ["desk", "other writer"]
    assert written == stored and stored is not None
    assert (stored.name, stored.min_score) == ("other writer", 0.5)
    assert await store.version() == version + 1

    def delete_meanwhile(current: Subscription) -> Subscription:
        other.delete(store._key(sub.id))
        return current.model_copy(update={"disabled": True})

    assert await store.update(sub.id, delete_meanwhile) is None
    assert await store.get(sub.id) is None  # not brought back
    other.close()
