"""The delivery worker against a real Redis, a real HTTP receiver and a real SMTP server.

Time is a ManualClock: retries, digests and mutes are stepped by advancing it and calling
``worker.tick()``, so nothing here waits for real schedules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from services.common.models import Alert, AlertArticle, AlertTopic, alert_id_for
from services.common.redis_server import free_port
from services.common.streams import StreamNames
from services.notify.alerts import AlertWriter
from services.notify.channels.base import Destination
from services.notify.channels.email import EmailChannel
from services.notify.channels.webhook import WebhookChannel
from services.notify.deadletters import list_dead_letters, redeliver, replay_dead_letters
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.retry import RetryPolicy
from services.notify.schedule import ManualClock
from services.notify.signing import verify
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import Subscription, SubscriptionCreate
from tests.notify_receiver import Receiver, Reply

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Harness:
    def __init__(self, client: aioredis.Redis, clock: ManualClock, schedule: tuple[float, ...]):
        self.client = client
        self.clock = clock
        self.names = StreamNames()
        self.store = SubscriptionStore(client, self.names)
        self.writer = AlertWriter(client, self.names)
        self.webhook = WebhookChannel(timeout=2.0, allow_private=True)
        self.registry = CollectorRegistry()
        self.worker = DeliveryWorker(
            client,
            self.names,
            self.store,
            {"webhook": self.webhook},
            RetryPolicy(schedule, jitter=0),
            DeliveryMetrics(self.registry),
            clock=clock,
        )
        self.n = 0

    async def subscribe(self, **fields: Any) -> Subscription:
        fields.setdefault("name", "desk")
        fields.setdefault("topics", ["air-defence-procurement"])
        sub = Subscription.create(SubscriptionCreate(**fields), now=self.clock())
        await self.store.put(sub)
        return sub

    async def alert(self, sub: Subscription, article_n: int | None = None) -> Alert:
        if article_n is None:
            self.n += 1
            article_n = self.n
        article_id = f"art_{article_n:024d}"
        alert = Alert(
            id=alert_id_for(sub.id, article_id),
            subscription_id=sub.id,
            article=AlertArticle(id=article_id, title=f"Story {article_n}"),
            topics=[AlertTopic(id="air-defence-procurement", score=0.9)],
        )
        await self.writer.create(alert, now=self.worker.now())
        return alert

    async def step(self, **advance: float) -> int:
        if advance:
            self.clock.advance(**advance)
        return await self.worker.tick()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def h(aredis: aioredis.Redis) -> AsyncIterator[Harness]:
    harness = Harness(aredis, ManualClock(T0), (0, 5, 300, 1800))
    yield harness
    await harness.webhook.aclose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def ids(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.requests]


async def test_duplicates_are_never_delivered_twice(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url)
    alert = await h.alert(sub, 1)
    # The same (subscription, article) again: a redelivered stream entry, a republished story.
    for _ in range(3):
        again = await h.alert(sub, 1)
        assert again.id == alert.id
    assert await h.step() == 1
    assert await h.step(seconds=3600) == 0
    assert ids(receiver) == [alert.id]
    verify(receiver.requests[0].headers, receiver.requests[0].body, [sub.webhook_secret or ""])
    assert await h.client.xlen(h.names.alerts) == 1
    assert await h.client.xlen(h.writer.keys.history(sub.id)) == 1


async def test_receiver_down_then_up_gets_everything_in_order(h: Harness) -> None:
    port = free_port()
    sub = await h.subscribe(webhook_url=f"http://127.0.0.1:{port}/hook")
    alerts = [await h.alert(sub) for _ in range(4)]
    await h.step()  # connection refused: retry in 5 s
    await h.step(seconds=5)  # still down: retry in 300 s
    assert await h.client.llen(h.writer.keys.queue(sub.id)) == 4
    with Receiver(port=port) as receiver:
        assert await h.step(seconds=299) == 0  # not due yet
        await h.step(seconds=1)
        assert ids(receiver) == [a.id for a in alerts]
    attempts = await h.worker.attempts(alerts[0].id)
    assert [a["status"] for a in attempts] == ["retryable", "retryable", "delivered"]
    assert await h.client.llen(h.writer.keys.queue(sub.id)) == 0
    assert await h.client.zscore(h.writer.keys.due, sub.id) is None
    assert (
        h.metric(
            "topicwatch_notify_delivery_attempts_total", channel="webhook", outcome="retryable"
        )
        == 2
    )


async def test_429_retry_after_is_honoured(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url)
    alert = await h.alert(sub)
    receiver.reply(Reply(429, {"retry-after": "120"}))
    await h.step()
    assert (
        await h.client.zscore(h.writer.keys.due, sub.id)
        == (T0 + timedelta(seconds=120)).timestamp()
    )
    assert await h.step(seconds=119) == 0
    await h.step(seconds=1)
    assert ids(receiver) == [alert.id, alert.id]
    assert receiver.requests[1].headers["webhook-id"] == alert.id


async def test_410_disables_the_subscription(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url)
    first = await h.alert(sub)
    second = await h.alert(sub)
    receiver.reply(Reply(410, body=b"unsubscribed"))
    await h.step()
    stored = await h.store.get(sub.id)
    assert stored is not None and stored.disabled
    assert "410" in (stored.disabled_reason or "")
    dead = await list_dead_letters(h.client, h.names)
    assert [d.alert.id for d in dead] == [first.id, second.id]
    assert "endpoint gone" in dead[0].data["reason"]
    assert "subscription disabled" in dead[1].data["reason"]
    assert len(receiver.requests) == 1  # nothing more is sent to a gone endpoint


async def test_dead_letter_then_replay(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url)
    alert = await h.alert(sub)
    receiver.reply(*[Reply(503, body=b"down for maintenance")] * 4)
    await h.step()
    for delay in (5, 300, 1800):
        await h.step(seconds=delay)
    [dead] = await list_dead_letters(h.client, h.names)
    assert dead.alert.id == alert.id and "gave up after 4 attempts" in dead.data["reason"]
    assert [a["status_code"] for a in dead.data["attempts"]] == [503] * 4
    assert "down for maintenance" in dead.data["attempts"][0]["reason"]
    assert h.metric("topicwatch_notify_alerts_dead_total", channel="webhook") == 1

    # The receiver is fixed; replay brings the alert back with a fresh retry budget.
    assert await replay_dead_letters(h.worker, [dead]) == [alert.id]
    assert await list_dead_letters(h.client, h.names) == []
    await h.step()
    assert ids(receiver)[-1] == alert.id and len(receiver.requests) == 5
    assert [a["status"] for a in await h.worker.attempts(alert.id)] == ["delivered"]


async def test_permanent_failure_dead_letters_at_once_and_the_queue_moves_on(
    h: Harness, receiver: Receiver
) -> None:
    sub = await h.subscribe(webhook_url=receiver.url)
    bad, good = await h.alert(sub), await h.alert(sub)
    receiver.reply(Reply(400, body=b"schema mismatch"))
    await h.step()
    assert ids(receiver) == [bad.id, good.id]
    [dead] = await list_dead_letters(h.client, h.names)
    assert dead.alert.id == bad.id and "schema mismatch" in dead.data["reason"]
    # Redeliver by alert id (the API's POST /v1/alerts/{id}/redeliver).
    assert await redeliver(h.worker, bad.id)
    await h.step()
    assert ids(receiver) == [bad.id, good.id, bad.id]
    assert await list_dead_letters(h.client, h.names) == []


async def test_digest_window_sends_one_message(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url, delivery="digest", digest_interval_minutes=30)
    h.clock.advance(minutes=1)
    a1 = await h.alert(sub)
    h.clock.advance(minutes=4)
    a2 = await h.alert(sub)
    await h.step()
    assert receiver.requests == []
    assert (
        await h.client.zscore(h.writer.keys.due, sub.id) == (T0 + timedelta(minutes=30)).timestamp()
    )
    await h.step(minutes=25)
    [request] = receiver.requests
    body = request.json()
    assert body["type"] == "alert.digest" and body["data"]["reason"] == "digest"
    assert [a["alert_id"] for a in body["data"]["alerts"]] == [a1.id, a2.id]
    assert request.headers["webhook-id"].startswith("dig_")


async def test_digest_retry_resends_the_same_message(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(webhook_url=receiver.url, delivery="digest", digest_interval_minutes=10)
    await h.alert(sub)
    await h.alert(sub)
    receiver.reply(Reply(500))
    await h.step(minutes=10)
    late = await h.alert(sub)  # arrives while the digest is being retried
    await h.step(seconds=5)
    first, retry = receiver.requests
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert first.json()["data"]["alerts"] == retry.json()["data"]["alerts"]
    await h.step(minutes=10)
    assert receiver.requests[-1].json()["data"]["alert_id"] == late.id


async def test_mute_keeps_alerts_and_delivers_them_when_it_ends(
    h: Harness, receiver: Receiver
) -> None:
    silence = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
    sub = await h.subscribe(webhook_url=receiver.url, silences=[silence])
    h.clock.advance(minutes=10)
    a1 = await h.alert(sub)
    h.clock.advance(minutes=10)
    a2 = await h.alert(sub)
    await h.step()
    assert receiver.requests == []
    await h.step(minutes=39)
    assert receiver.requests == []
    await h.step(minutes=1)  # the silence ends at 13:00
    [request] = receiver.requests
    assert request.json()["data"]["reason"] == "muted"
    assert [a["alert_id"] for a in request.json()["data"]["alerts"]] == [a1.id, a2.id]
    after = await h.alert(sub)
    await h.step()
    assert receiver.requests[-1].headers["webhook-id"] == after.id


async def test_rate_limit_folds_the_excess_into_a_digest(h: Harness, receiver: Receiver) -> None:
    sub = await h.subscribe(
        webhook_url=receiver.url, rate_limit={"max_alerts": 2, "per_minutes": 10}
    )
    alerts = [await h.alert(sub) for _ in range(5)]
    await h.step()
    assert ids(receiver) == [alerts[0].id, alerts[1].id]
    await h.step(minutes=10)
    assert len(receiver.requests) == 3
    digest = receiver.requests[2].json()
    assert digest["data"]["reason"] == "rate_limit"
    assert [a["alert_id"] for a in digest["data"]["alerts"]] == [a.id for a in alerts[2:]]


async def test_history_only_subscription_is_not_queued(h: Harness) -> None:
    sub = await h.subscribe()
    alert = Alert(
        id=alert_id_for(sub.id, "art_x"),
        subscription_id=sub.id,
        article=AlertArticle(id="art_x", title="x"),
        topics=[],
    )
    assert await h.writer.create(alert, now=h.worker.now(), deliver=False)
    assert await h.client.llen(h.writer.keys.queue(sub.id)) == 0
    assert await h.client.xlen(h.writer.keys.history(sub.id)) == 1


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


async def test_email_subscription_gets_mail(aredis: aioredis.Redis) -> None:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        harness = Harness(aredis, ManualClock(T0), (0, 5))
        email = EmailChannel(host="127.0.0.1", port=controller.port, starttls=False)
        harness.worker.channels = {"webhook": harness.webhook, "email": email}
        sub = await harness.subscribe(email="analyst@example.org")
        alert = await harness.alert(sub)
        await harness.step()
        [envelope] = mailbox.envelopes
        assert envelope.rcpt_tos == ["analyst@example.org"]
        assert f"<{alert.id}@topicwatch>".encode() in envelope.content
        await harness.webhook.aclose()
    finally:
        controller.stop()


async def test_retries_and_in_flight_messages_survive_a_restart(
    h: Harness, receiver: Receiver
) -> None:
    """A worker that dies mid-way leaves everything in Redis; a new one finishes the job."""
    sub = await h.subscribe(webhook_url=receiver.url)
    first, second = await h.alert(sub), await h.alert(sub)
    receiver.reply(Reply(503))
    await h.step()  # attempt 1 fails; retry due in 5 s
    # "Restart": a brand-new worker (new process) over the same Redis.
    fresh = Harness(h.client, h.clock, (0, 5, 300, 1800))
    await fresh.step(seconds=5)
    assert ids(receiver) == [first.id, first.id, second.id]
    assert [a["status"] for a in await fresh.worker.attempts(first.id)] == [
        "retryable",
        "delivered",
    ]
    await fresh.webhook.aclose()


async def test_a_crash_between_planning_and_sending_resends_the_same_message(
    h: Harness, receiver: Receiver
) -> None:
    sub = await h.subscribe(webhook_url=receiver.url, delivery="digest", digest_interval_minutes=5)
    a1, a2 = await h.alert(sub), await h.alert(sub)
    h.clock.advance(minutes=5)
    # The worker claims and plans (the digest is now in flight), then dies before sending.
    assert await h.worker.claim() == [sub.id]
    flight, _ = await h.worker._plan(sub.id, await h.store.get(sub.id))
    assert flight is not None and flight.digest
    await h.alert(sub)  # more arrives while nobody is working
    assert await h.step() == 0  # still leased to the dead worker
    fresh = Harness(h.client, h.clock, (0, 5))
    await fresh.step(seconds=h.worker.lease_seconds)
    body = receiver.requests[0].json()
    assert receiver.requests[0].headers["webhook-id"] == flight.id
    assert [a["alert_id"] for a in body["data"]["alerts"]] == [a1.id, a2.id]
    await fresh.webhook.aclose()


def test_policy_and_destination_follow_the_subscription() -> None:
    from services.notify.delivery import destination_of, policy_for
    from services.notify.schedule import is_muted
    from services.notify.subscriptions import RetiringSecret

    sub = Subscription.create(
        SubscriptionCreate(
            name="weekends off",
            topics=["cyber"],
            webhook_url="https://hooks.example.org/x",
            delivery="digest",
            digest_interval_minutes=15,
            rate_limit={"max_alerts": 3, "per_minutes": 20},
            quiet_hours=[
                {"start": "00:00", "end": "23:59", "timezone": "Europe/Warsaw", "days": ["sat"]}
            ],
        ),
        now=T0,
    )
    policy = policy_for(sub)
    assert policy.mode == "digest" and policy.digest_interval_minutes == 15
    assert policy.rate_limit is not None and policy.rate_limit.window_minutes == 20
    assert policy.quiet_hours[0].days == [5]
    assert is_muted(policy, datetime(2026, 1, 10, 12, tzinfo=UTC))  # a Saturday
    assert not is_muted(policy, datetime(2026, 1, 9, 12, tzinfo=UTC))

    old, older = "whsec_" + "A" * 32, "whsec_" + "B" * 32
    rotated = sub.model_copy(
        update={
            "previous_webhook_secrets": [
                RetiringSecret(secret=old, expires_at=T0 + timedelta(hours=1)),
                RetiringSecret(secret=older, expires_at=T0 - timedelta(hours=1)),
            ]
        }
    )
    destination = destination_of(rotated, T0)
    assert destination is not None and destination.secrets == (sub.webhook_secret, old)
    assert destination_of(
        Subscription.create(SubscriptionCreate(name="x", email="a@example.org"), now=T0)
    ) == Destination("email", "a@example.org")
    assert destination_of(Subscription.create(SubscriptionCreate(name="x"), now=T0)) is None


async def test_a_claim_sharing_a_round_trip_with_a_drains_end_does_not_strand_it(
    h: Harness, receiver: Receiver
) -> None:
    """The run loop's claim can ride in the same pipelined round trip as a drain's last step.
    When that step left the subscription due (an alert came in while it was sending), the
    claim leases it, sees this process still draining it and skips it: the lease must be
    undone when the drain ends, or nobody drains the new alert until the lease runs out
    (seen in the fan-out benchmark as subscriptions stuck after their first webhook)."""
    sub = await h.subscribe(webhook_url=receiver.url)
    first = await h.alert(sub)
    worker = h.worker
    finish = worker._finish
    seen: dict[str, Any] = {}

    async def finish_then_claim(sid: str) -> None:
        seen["second"] = await h.alert(sub)  # queued while the first was being sent
        await finish(sid)
        seen["claimed"] = await worker.claim()  # the run loop's claim, same round trip

    worker._finish = finish_then_claim  # type: ignore[method-assign]
    task = asyncio.create_task(worker._drain_guarded(sub.id))
    worker._inflight[sub.id] = task
    await task
    worker._finish = finish  # type: ignore[method-assign]

    assert seen["claimed"] == []  # skipped: this process was still draining it
    assert await h.step() == 1  # due again at once, not after the 120 s lease
    assert ids(receiver) == [first.id, seen["second"].id]
