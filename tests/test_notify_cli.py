"""``topicwatch subscribe``, ``tail`` and ``dead-letters list|replay`` against the real service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.cli import main
from services.common.models import Alert, AlertArticle, AlertTopic
from services.common.settings import Settings
from services.common.streams import StreamNames
from services.notify.alerts import AlertKeys, AlertWriter
from services.notify.channels.base import DeliveryOutcome
from services.notify.delivery import DeliveryMetrics, DeliveryWorker, InFlight
from services.notify.retry import RetryPolicy
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate
from tests.notify_receiver import Receiver, serve
from tests.test_notify_api import publish

KEY = "cli-key"


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICWATCH_REDIS_URL", redis_url)
    monkeypatch.setenv("TOPICWATCH_API_KEYS", KEY)
    monkeypatch.setenv("TOPICWATCH_ALLOW_PRIVATE_WEBHOOKS", "true")


@pytest.fixture
def notify(redis_url: str, tmp_path: Path, env: None) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        api_keys=KEY,
        allow_private_webhooks=True,
        read_block_ms=50,
    )
    with serve(settings, sse_ping_seconds=0.5) as url:
        yield url


def test_subscribe_then_tail(notify: str, redis_url: str, capsys: pytest.CaptureFixture) -> None:
    with Receiver() as receiver:
        code = main(
            [
                "subscribe",
                "--topic",
                "air-defence-procurement",
                "--query",
                "S-400",
                "--webhook",
                receiver.url,
                "--url",
                notify,
                "--json",
            ]
        )
        assert code == 0
        created = json.loads(capsys.readouterr().out)
        assert created["webhook_url"] == receiver.url and created["query"] == "S-400"
        publish(redis_url, 1)
        receiver.wait_for(1)
    code = main(
        [
            "tail",
            created["id"],
            "--token",
            created["read_token"],
            "--since",
            "0",
            "--count",
            "1",
            "--url",
            notify,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Story 1: Turkey takes S-400 batch" in out
    assert "air-defence-procurement 0.90" in out


def test_subscribe_errors_name_the_field(notify: str, capsys: pytest.CaptureFixture) -> None:
    code = main(["subscribe", "--topic", "cyber", "--query", "(unclosed", "--url", notify])
    assert code == 1
    assert "query" in capsys.readouterr().err
    assert main(["subscribe", "--url", notify]) == 2


def test_tail_refuses_a_wrong_token(notify: str, capsys: pytest.CaptureFixture) -> None:
    created = httpx.post(
        f"{notify}/v1/subscriptions",
        json={"name": "x", "topics": ["cyber"]},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    assert main(["tail", created["id"], "--token", "swr_nope", "--url", notify]) == 1
    assert "401" in capsys.readouterr().err


async def _dead_letter_one(
    redis_url: str, alert_id: str = "alt_deadbeef", *, subscribed: bool = True
) -> str:
    """A dead-lettered alert of subscription ``sub_cli`` (a webhook; deleted unless
    ``subscribed``)."""
    client = aioredis.Redis.from_url(redis_url)
    names = StreamNames()
    store = SubscriptionStore(client, names)
    worker = DeliveryWorker(
        client,
        names,
        store,
        {},
        RetryPolicy(),
        DeliveryMetrics(CollectorRegistry()),
    )
    if subscribed:
        create = SubscriptionCreate(name="desk", webhook_url="https://hooks.example.org/tw")
        sub = Subscription.create(create, now=worker.now())
        await store.put(sub.model_copy(update={"id": "sub_cli"}))
    else:
        await store.delete("sub_cli")
    alert = Alert(
        id=alert_id,
        subscription_id="sub_cli",
        article=AlertArticle(id="art_1", title="Lost story"),
        topics=[AlertTopic(id="cyber", score=0.7)],
    )
    await AlertWriter(client, names).create(alert, now=worker.now(), deliver=False)
    flight = InFlight(alert.id, (), (alert.id,), False, "immediate")
    await worker._record(alert.id, DeliveryOutcome.permanent("HTTP 400: nope", 400))
    await worker._dead_letter(flight, [alert], "webhook", "permanent: HTTP 400: nope")
    await client.aclose()
    return alert.id


def test_dead_letters_list_and_replay(env: None, redis_url: str, capsys) -> None:
    alert_id = asyncio.run(_dead_letter_one(redis_url))
    assert main(["dead-letters", "list"]) == 0
    out = capsys.readouterr().out
    assert alert_id in out and "HTTP 400: nope" in out and "1 dead-lettered" in out
    assert main(["dead-letters", "list", "--json"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["attempts"][0]["status_code"] == 400

    assert main(["dead-letters", "replay", "alt_unknown"]) == 1
    assert main(["dead-letters", "replay", "--all"]) == 0
    assert f"queued {alert_id}" in capsys.readouterr().out
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    keys = AlertKeys(StreamNames())
    assert client.xlen(StreamNames().alerts_dead) == 0
    assert client.lrange(keys.queue("sub_cli"), 0, -1)[0].startswith(alert_id)
    assert client.zscore(keys.due, "sub_cli") is not None
    client.close()


def test_dead_letters_of_a_deleted_subscription_are_not_replayed(
    env: None, redis_url: str, capsys
) -> None:
    """Queuing them would only dead-letter them again (without their attempt log): the
    replay says why and leaves them where they are; so does the API's redeliver."""
    alert_id = asyncio.run(_dead_letter_one(redis_url, "alt_orphan", subscribed=False))
    assert main(["dead-letters", "replay", alert_id]) == 1
    assert "its subscription was deleted" in capsys.readouterr().err
    assert main(["dead-letters", "replay", "--all"]) == 1
    client = redis_sync.Redis.from_url(redis_url, decode_responses=True)
    assert client.xlen(StreamNames().alerts_dead) == 1
    assert not client.exists(AlertKeys(StreamNames()).queue("sub_cli"))
    client.close()
    assert main(["dead-letters", "list"]) == 0
    assert "HTTP 400: nope" in capsys.readouterr().out  # its attempts are still there

    settings = Settings(redis_url=redis_url, api_keys=KEY, read_block_ms=50)
    with serve(settings) as url:
        answer = httpx.post(
            f"{url}/v1/alerts/{alert_id}/redeliver", headers={"Authorization": f"Bearer {KEY}"}
        )
    assert answer.status_code == 409 and "subscription was deleted" in answer.text
