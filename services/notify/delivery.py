"""The delivery worker: per-subscription ordered queues, retries, dead letters.

Each subscription has a FIFO queue of alert ids (``queue:{sid}``) and an entry in the ``due``
sorted set saying when its head may next be attempted. The worker claims due subscriptions
(moving their score forward by a lease, so a crashed worker's claim expires and another
takes over), sends the head through the subscription's channel, and then:

* delivered -> pop it and go on with the next one;
* retryable -> schedule the subscription again after the retry policy's delay (or the
  receiver's ``Retry-After``); later alerts wait behind it, so a subscriber gets alerts in
  order once its endpoint is back;
* permanent, or retries used up -> dead-letter it with every attempt's outcome, go on;
* gone (HTTP 410) -> disable the subscription and dead-letter what is queued for it.

The steps are shared by every channel; channels only send and classify (channels/base.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter

from services.common.models import Alert, utcnow
from services.common.streams import DATA_FIELD, StreamNames
from services.notify.alerts import AlertKeys
from services.notify.channels.base import (
    Channel,
    DeliveryOutcome,
    Destination,
    Notification,
    OutcomeStatus,
)
from services.notify.retry import RetryPolicy
from services.notify.store import SubscriptionStore

log = logging.getLogger(__name__)

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# Pop the head only if it is still the alert we handled (a replay may have changed the queue).
_POP_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) return 1 end
return 0
"""

# Unschedule a subscription only when its queue is empty: an alert queued meanwhile keeps it.
_FINISH = """
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 1 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 0
"""

OUTCOMES = ("delivered", "retryable", "permanent", "gone", "dead")


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts_total = Counter(
            "topicwatch_notify_delivery_attempts_total",
            "Delivery attempts, by channel and outcome.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.dead_total = Counter(
            "topicwatch_notify_alerts_dead_total",
            "Alerts dead-lettered, by channel.",
            ["channel"],
            registry=registry,
        )
        for channel in ("webhook", "email"):
            self.dead_total.labels(channel)
            for outcome in OUTCOMES[:4]:
                self.attempts_total.labels(channel, outcome)


def destination_of(subscription: Mapping[str, Any]) -> Destination | None:
    """Where a subscription's alerts go (None when it has no channel configured)."""
    if subscription.get("webhook_url"):
        secrets = [subscription["webhook_secret"], *subscription.get("previous_secrets", [])]
        return Destination("webhook", subscription["webhook_url"], tuple(secrets))
    if subscription.get("email"):
        return Destination("email", subscription["email"])
    return None


class DeliveryWorker:
    def __init__(
        self,
        client: aioredis.Redis,
        names: StreamNames,
        store: SubscriptionStore,
        channels: Mapping[str, Channel],
        policy: RetryPolicy,
        metrics: DeliveryMetrics,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 120.0,
        poll_seconds: float = 0.1,
        claim_batch: int = 50,
    ) -> None:
        self.client = client
        self.names = names
        self.keys = AlertKeys(names)
        self.store = store
        self.channels = channels
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.claim_batch = claim_batch
        self._claim = client.register_script(_CLAIM)
        self._pop_head = client.register_script(_POP_HEAD)
        self._finish = client.register_script(_FINISH)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Deliver for as long as the process lives; one task per due subscription."""
        try:
            while True:
                claimed = await self.claim()
                for sid in claimed:
                    task = asyncio.create_task(self._drain_guarded(sid), name=f"deliver:{sid}")
                    self._inflight[sid] = task
                await asyncio.sleep(self.poll_seconds)
        finally:
            for task in self._inflight.values():
                task.cancel()
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def claim(self) -> list[str]:
        """Subscriptions due now that this process is not already draining (leased to us)."""
        now = self.clock()
        raw = await self._claim(
            keys=[self.keys.due], args=[now, now + self.lease_seconds, self.claim_batch]
        )
        sids = [s.decode() if isinstance(s, bytes) else str(s) for s in raw]
        return [sid for sid in sids if sid not in self._inflight]

    async def tick(self) -> int:
        """Claim what is due and drain it to the end (tests and tools step with this)."""
        sids = await self.claim()
        await asyncio.gather(*(self.drain(sid) for sid in sids))
        return len(sids)

    async def _drain_guarded(self, sid: str) -> None:
        try:
            await self.drain(sid)
        except Exception:
            # The lease expires and the subscription is claimed again: nothing is lost.
            log.exception("delivery for %s failed; retrying after the lease", sid)
        finally:
            self._inflight.pop(sid, None)

    async def drain(self, sid: str) -> None:
        """Send this subscription's queued alerts in order until it is empty or must wait."""
        queue = self.keys.queue(sid)
        while True:
            head = await self.client.lindex(queue, 0)
            if head is None:
                await self._finish(keys=[queue, self.keys.due], args=[sid, self.clock()])
                return
            alert_id = head.decode() if isinstance(head, bytes) else str(head)
            subscription = await self.store.get(sid)
            alert = await self._alert(alert_id)
            if alert is None:  # expired record: nothing left to send
                await self._pop_head(keys=[queue], args=[alert_id])
                continue
            if subscription is None or subscription.get("disabled"):
                why = "subscription deleted" if subscription is None else (
                    f"subscription disabled: {subscription.get('disabled_reason', '')}"
                )
                await self.dead_letter(alert, "none", why)
                await self._pop_head(keys=[queue], args=[alert_id])
                continue
            destination = destination_of(subscription)
            channel = self.channels.get(destination.kind) if destination else None
            if destination is None or channel is None:
                kind = destination.kind if destination else "none"
                outcome = DeliveryOutcome.permanent(f"no channel available for {kind}")
            else:
                notification = Notification.single(alert, subscription.get("name", ""))
                outcome = await channel.send(notification, destination)
            kind = destination.kind if destination else "none"
            attempts = await self._record(alert_id, outcome)
            self.metrics.attempts_total.labels(kind, outcome.status.value).inc()
            if outcome.status is OutcomeStatus.DELIVERED:
                await self._pop_head(keys=[queue], args=[alert_id])
                await self._renew(sid)
                continue
            if outcome.status is OutcomeStatus.RETRYABLE:
                delay = self.policy.next_delay(attempts, outcome.retry_after)
                if delay is not None:
                    await self.client.zadd(self.keys.due, {sid: self.clock() + delay}, xx=True)
                    return
                await self.dead_letter(alert, kind, f"gave up after {attempts} attempts")
            elif outcome.status is OutcomeStatus.GONE:
                await self.disable(sid, subscription, f"endpoint gone: {outcome.reason}")
                await self.dead_letter(alert, kind, f"endpoint gone: {outcome.reason}")
            else:
                await self.dead_letter(alert, kind, f"permanent failure: {outcome.reason}")
            await self._pop_head(keys=[queue], args=[alert_id])

    async def _renew(self, sid: str) -> None:
        """Extend our lease while a long queue drains, so no other worker takes it over."""
        await self.client.zadd(self.keys.due, {sid: self.clock() + self.lease_seconds}, xx=True)

    async def _alert(self, alert_id: str) -> Alert | None:
        raw = await self.client.get(self.keys.alert(alert_id))
        return Alert.model_validate_json(raw) if raw else None

    async def _record(self, alert_id: str, outcome: DeliveryOutcome) -> int:
        entry = {"at": utcnow().isoformat(), **outcome.to_dict()}
        key = self.keys.attempts(alert_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(entry))
            pipe.expire(key, 90 * 24 * 3600)
            count, _ = await pipe.execute()
        return int(count)

    async def attempts(self, alert_id: str) -> list[dict[str, Any]]:
        raw = await self.client.lrange(self.keys.attempts(alert_id), 0, -1)
        return [json.loads(item) for item in raw]

    async def dead_letter(self, alert: Alert, channel: str, reason: str) -> None:
        """Write the alert and every attempt's outcome to ``alerts:dead``."""
        record = {
            "type": "dead_alert",
            "schema_version": 1,
            "alert": alert.model_dump(mode="json"),
            "subscription_id": alert.subscription_id,
            "channel": channel,
            "reason": reason,
            "attempts": await self.attempts(alert.id),
            "dead_at": utcnow().isoformat(),
        }
        await self.client.xadd(self.names.alerts_dead, {DATA_FIELD: json.dumps(record)})
        if channel in ("webhook", "email"):
            self.metrics.dead_total.labels(channel).inc()
        log.warning("alert %s dead-lettered: %s", alert.id, reason)

    async def disable(self, sid: str, subscription: dict[str, Any], reason: str) -> None:
        subscription = {**subscription, "disabled": True, "disabled_reason": reason}
        await self.store.put(subscription)

    async def redeliver(self, alert_id: str) -> bool:
        """Queue an existing alert again (after a fix), with a fresh attempt log."""
        alert = await self._alert(alert_id)
        if alert is None:
            return False
        sid = alert.subscription_id
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.attempts(alert_id))
            pipe.rpush(self.keys.queue(sid), alert_id)
            pipe.zadd(self.keys.due, {sid: self.clock()}, nx=True)
            await pipe.execute()
        return True
