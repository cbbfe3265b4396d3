"""The delivery worker: per-subscription ordered queues, plans, retries, dead letters.

Each subscription has a FIFO queue of alerts (``queue:{sid}``) and an entry in the ``due``
sorted set saying when it should next be looked at. The worker claims due subscriptions
(moving their score forward by a lease, so a crashed worker's claim expires and another
takes over) and drains each one:

1. If nothing is in flight, ask the pure planner (``schedule.plan``) what to do with the head
   of the queue given the subscription's delivery settings and the clock: send one alert now,
   send a digest of several, or wait (digest window, spent rate limit, mute) until a time,
   which becomes the subscription's due score.
2. The chosen notification is written to ``inflight:{sid}`` before the first attempt, so every
   retry sends exactly the same message with the same ``webhook-id`` even if the worker
   restarts or more alerts arrive meanwhile.
3. Send it through the subscription's channel (webhook or e-mail; channels only send and
   classify, see channels/base.py), append the outcome to the attempt log, then:

   * delivered -> pop its alerts off the queue and go on with the next;
   * retryable -> due again after the retry policy's delay (or the receiver's
     ``Retry-After``); later alerts wait behind it, so a subscriber gets alerts in order once
     its endpoint is back;
   * permanent, or retries used up -> dead-letter each alert with every attempt's outcome;
   * gone (HTTP 410) -> disable the subscription and dead-letter what is queued for it.

Dead letters (``alerts:dead``) are replayed by ``POST /v1/alerts/{id}/redeliver`` or
``topicwatch dead-letters replay`` (``deadletters.py``): the alert is queued again with a fresh
retry budget.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.models import Alert, utcnow
from services.common.streams import DATA_FIELD, StreamNames, as_text
from services.notify.alerts import ALERT_TTL_SECONDS, AlertKeys, QueueItem
from services.notify.batching import CommandBatcher, PipelineLike, eval_script
from services.notify.channels.base import (
    Channel,
    DeliveryOutcome,
    Destination,
    Notification,
    OutcomeStatus,
)
from services.notify.retry import RetryPolicy
from services.notify.schedule import (
    MAX_DIGEST_ALERTS,
    DeliveryPolicy,
    Queued,
    QuietHours,
    RateLimit,
    Silence,
    plan,
    plan_lookahead,
    system_clock,
    window_bounds,
)
from services.notify.store import SubscriptionStore
from services.notify.subscriptions import WEEKDAYS, Subscription

log = logging.getLogger(__name__)

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# Unschedule a subscription only when its queue is empty: an alert queued meanwhile keeps it.
_FINISH = """
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) return 1 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 0
"""

# Append one attempt to a notification's log and keep the log as long as the alert.
_RECORD = """
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""

# After a send: append the attempt to the log (if any), pop the notification's alerts off the
# head of the queue (they are always a prefix: new alerts and replays are appended at the
# tail) and forget the in-flight record, extend the lease (if given), and return the new
# queue head: everything between two sends of one subscription, atomically, in one call.
# KEYS: attempts log, queue, in-flight, due. ARGV: attempt JSON or '', log TTL, lease score
# or '', subscription id, LRANGE stop, then the notification's queue members.
_ADVANCE = """
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
for i = 6, #ARGV do
  if redis.call('LINDEX', KEYS[2], 0) == ARGV[i] then redis.call('LPOP', KEYS[2]) end
end
redis.call('DEL', KEYS[3])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], 'XX', ARGV[3], ARGV[4]) end
return redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[5]))
"""

# Undo the lease of a claim that met a subscription this process was still draining (the
# drain had just left it due, in the same round trip), unless the drain wrote its score since.
# KEYS: due. ARGV: subscription id, the lease score that claim wrote, now.
_UNLEASE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# Store the chosen notification as in flight and return its alerts' records.
# KEYS: in-flight, then the alerts (one subscription's). ARGV: the in-flight JSON.
_START = """
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('MGET', unpack(KEYS, 2))
"""

# Count an alert sent immediately in a rate-limit window (the key expires after the window).
_COUNT = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
"""

#: Subscriptions one process drains at once. Enough to keep a core busy while receivers
#: answer; few enough that a second notify process finds due subscriptions to claim.
MAX_ACTIVE = 128

CHANNELS = ("webhook", "email")
OUTCOMES = ("delivered", "retryable", "permanent", "gone")
KINDS = ("alert", "digest")

#: One send: a webhook answering in milliseconds up to the webhook timeout and beyond (SMTP).
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Ingested -> delivered: about a second when all is well, hours for a digest or after retries.
END_TO_END_BUCKETS = (
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0, 86400.0,
)  # fmt: skip


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
        self.notifications_total = Counter(
            "topicwatch_notify_notifications_total",
            "Notifications planned, by kind (single alert or digest) and reason.",
            ["kind", "reason"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "topicwatch_notify_delivery_duration_seconds",
            "Time one delivery attempt took (the webhook request, or the SMTP exchange),"
            " by channel and outcome.",
            ["channel", "outcome"],
            registry=registry,
            buckets=SEND_BUCKETS,
        )
        self.end_to_end_seconds = Histogram(
            "topicwatch_end_to_end_seconds",
            "From the article's ingestion to the delivery of its alert, by channel and kind"
            " (a digest waits for its window on purpose).",
            ["channel", "kind"],
            registry=registry,
            buckets=END_TO_END_BUCKETS,
        )
        self.backlog = Gauge(
            "topicwatch_notify_delivery_backlog",
            "Subscriptions with alerts queued for delivery: due now (state=due) or waiting"
            " for a digest window, rate limit, mute, retry delay or a worker's lease (waiting).",
            ["state"],
            registry=registry,
        )
        self.oldest_due_seconds = Gauge(
            "topicwatch_notify_delivery_oldest_due_seconds",
            "How long the subscription due the longest has been waiting for a worker (0: none).",
            registry=registry,
        )
        for channel in (*CHANNELS, "none"):
            self.dead_total.labels(channel)
        for channel in CHANNELS:
            for outcome in OUTCOMES:
                self.attempts_total.labels(channel, outcome)
                self.send_seconds.labels(channel, outcome)
            for kind in KINDS:
                self.end_to_end_seconds.labels(channel, kind)
        for state in ("due", "waiting"):
            self.backlog.labels(state)
        for kind in ("alert", "digest"):
            for reason in ("immediate", "digest", "rate_limit", "muted"):
                self.notifications_total.labels(kind, reason)


def policy_for(subscription: Subscription) -> DeliveryPolicy:
    """The subscription's delivery fields as the planner's policy."""
    rate = subscription.rate_limit
    return DeliveryPolicy(
        mode=subscription.delivery,
        digest_interval_minutes=subscription.digest_interval_minutes or 60,
        rate_limit=(
            RateLimit(max_alerts=rate.max_alerts, window_minutes=rate.per_minutes) if rate else None
        ),
        silences=[Silence(start=s.start, end=s.end) for s in subscription.silences],
        quiet_hours=[
            QuietHours(
                start=q.start,
                end=q.end,
                timezone=q.timezone,
                days=[WEEKDAYS.index(d) for d in q.days] or list(range(7)),
            )
            for q in subscription.quiet_hours
        ],
    )


def destination_of(subscription: Subscription, now: datetime | None = None) -> Destination | None:
    """Where a subscription's alerts go: its webhook, else its e-mail, else nowhere (None:
    history and live stream only). Secrets still in their rotation grace period sign too."""
    if subscription.webhook_url:
        current = now or utcnow()
        secrets = [subscription.webhook_secret or ""]
        secrets += [
            s.secret for s in subscription.previous_webhook_secrets if s.expires_at > current
        ]
        return Destination("webhook", subscription.webhook_url, tuple(s for s in secrets if s))
    if subscription.email:
        return Destination("email", subscription.email)
    return None


@dataclass(frozen=True, slots=True)
class InFlight:
    """The notification being attempted for one subscription (JSON in ``inflight:{sid}``)."""

    id: str
    members: tuple[str, ...]
    alert_ids: tuple[str, ...]
    digest: bool
    reason: str

    def dumps(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "members": list(self.members),
                "alert_ids": list(self.alert_ids),
                "digest": self.digest,
                "reason": self.reason,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> InFlight:
        data = json.loads(raw)
        return cls(
            data["id"],
            tuple(data["members"]),
            tuple(data["alert_ids"]),
            bool(data["digest"]),
            str(data["reason"]),
        )


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A subscription's delivery state, read in one batched group."""

    version: int
    flight: InFlight | None
    items: list[QueueItem]
    #: Queue entries asked for: when ``len(items)`` reaches it, there may be more.
    lookahead: int
    #: The subscription's document, when it was asked for (the first load of a drain).
    subscription: bytes | None = None


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
        clock: Callable[[], datetime] = system_clock,
        lease_seconds: float = 120.0,
        poll_seconds: float = 0.05,
        claim_batch: int = 50,
        max_active: int = MAX_ACTIVE,
        max_digest: int = MAX_DIGEST_ALERTS,
        rng: random.Random | None = None,
        shards: Sequence[int] | None = None,
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
        self.max_active = max_active
        self.max_digest = max_digest
        self.rng = rng
        #: The subscription shards this process delivers for (all by default; a replica
        #: given a share of the partitions serves the same share of shards).
        self.shards = list(range(names.partitions)) if shards is None else list(shards)
        self._next_shard = 0
        self.batcher = CommandBatcher(client)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Subscriptions a claim leased while this process was still draining them, with the
        # lease score it wrote: undone when that drain ends (``_UNLEASE``).
        self._overclaimed: dict[str, float] = {}
        self._wake = asyncio.Event()

    def now(self) -> float:
        return self.clock().timestamp()

    def wake(self) -> None:
        """Look for due work now (called after new alerts are queued in this process)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver for as long as the process lives; one task per due subscription.

        At most ``max_active`` subscriptions at once: claiming every due subscription would
        lease them all to this process and leave nothing for a second notify process to do.
        """
        try:
            while True:
                if len(self._inflight) < self.max_active:
                    claimed = await self.claim(self.max_active - len(self._inflight))
                    for sid in claimed:
                        task = asyncio.create_task(self._drain_guarded(sid), name=f"deliver:{sid}")
                        self._inflight[sid] = task
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            for task in self._inflight.values():
                task.cancel()
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def claim(self, limit: int | None = None) -> list[str]:
        """Subscriptions due now that this process is not already draining (leased to us):
        at most ``limit`` (default ``claim_batch``), from the shards in turn."""
        now = self.now()
        count = self.claim_batch if limit is None else max(0, min(limit, self.claim_batch))
        sids: list[str] = []
        # One due set per shard, each in its own slot; start at a different one each time so
        # that a busy first shard does not starve the others.
        start = self._next_shard
        self._next_shard = (start + 1) % len(self.shards) if self.shards else 0
        for i in range(len(self.shards)):
            if len(sids) >= count:
                break
            key = self.keys.due_in(self.shards[(start + i) % len(self.shards)])
            lease = now + self.lease_seconds
            args = [now, lease, count - len(sids)]
            [raw] = await self.batcher.run(
                functools.partial(eval_script, source=_CLAIM, keys=[key], args=args)
            )
            for sid in map(as_text, raw):
                if sid in self._inflight:
                    # Our drain of it is ending: it left the subscription due (an alert came
                    # in) in the round trip this claim shared. Dropping the claim would leave
                    # it leased to nobody until the lease runs out.
                    self._overclaimed[sid] = lease
                else:
                    sids.append(sid)
        return sids

    async def tick(self) -> int:
        """Claim what is due and drain it (tests and tools step the worker with this)."""
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
            self._wake.set()  # a place is free: claim more now rather than at the next poll
        lease = self._overclaimed.pop(sid, None)
        if lease is not None:
            try:
                keys = [self.keys.due_for(sid)]
                args = [sid, lease, self.now()]
                await self.batcher.run(lambda pipe: eval_script(pipe, _UNLEASE, keys, args))
            except Exception:
                log.exception("could not release %s at once; it is claimed after the lease", sid)

    # --- one subscription ------------------------------------------------------------------

    async def drain(self, sid: str) -> None:
        """Send this subscription's queued alerts in order until it is empty or must wait.

        Each step is one batched group of Redis commands (``batching.py``): load (version,
        in-flight record, queue head), plan + store the flight + read its alerts, and after a
        delivery record + complete + renew the lease + load the next state. With hundreds of
        subscriptions draining at once, each group shares its round trip with the others'.
        """
        subscription: Subscription | None = None
        policy: DeliveryPolicy | None = None
        seen_version: int | None = None
        state = await self._load(sid, self.max_digest + 1, with_subscription=True)
        subscription = self.store.parse(state.subscription)
        while True:
            # Parse the subscription again only when some process changed one (a cheap GET
            # in every load group).
            if state.version != seen_version:
                if seen_version is not None:
                    subscription = await self.store.get(sid)
                seen_version = state.version
                usable = subscription is not None and not subscription.disabled
                policy = policy_for(subscription) if usable and subscription else None
                wanted = plan_lookahead(policy, self.max_digest)
                if (
                    state.flight is None
                    and wanted > state.lookahead
                    and len(state.items) >= state.lookahead
                ):
                    state = await self._load(sid, wanted)
            lookahead = plan_lookahead(policy, self.max_digest)
            flight = state.flight
            if flight is None:
                flight, wait_until, raws = await self._plan_and_fetch(
                    sid, subscription, state.items, policy
                )
                if flight is None:
                    if wait_until is None:
                        await self._finish(sid)
                    else:
                        await self.client.zadd(self.keys.due_for(sid), {sid: wait_until}, xx=True)
                    return
            else:
                raws = await self._alert_raws(flight.alert_ids, sid)
            alerts = [Alert.model_validate_json(raw) for raw in raws if raw]
            if not alerts:  # records expired: nothing left to send
                state = await self._advance(sid, flight, lookahead)
                continue
            if subscription is None or subscription.disabled:
                why = (
                    "subscription deleted"
                    if subscription is None
                    else f"subscription disabled: {subscription.disabled_reason or ''}"
                )
                await self._dead_letter(flight, alerts, "none", why)
                state = await self._advance(sid, flight, lookahead)
                continue
            destination = destination_of(subscription, self.clock())
            if destination is None:  # history / live stream only: nothing to send
                state = await self._advance(sid, flight, lookahead)
                continue
            channel = self.channels.get(destination.kind)
            if flight.digest:
                notification = Notification(
                    flight.id, sid, tuple(alerts), True, subscription.name, flight.reason
                )
            else:
                notification = Notification.single(alerts[0], subscription.name)
            if channel is None:
                outcome = DeliveryOutcome.permanent(f"no {destination.kind} channel configured")
            else:
                started = time.perf_counter()
                outcome = await channel.send(notification, destination)
                self.metrics.send_seconds.labels(destination.kind, outcome.status.value).observe(
                    time.perf_counter() - started
                )
            kind = destination.kind
            self.metrics.attempts_total.labels(kind, outcome.status.value).inc()
            if outcome.status is OutcomeStatus.DELIVERED:
                state = await self._advance(sid, flight, lookahead, outcome)
                self._observe_end_to_end(kind, flight.digest, alerts)
                continue
            attempts = await self._record(flight.id, outcome, sid)
            if outcome.status is OutcomeStatus.RETRYABLE:
                delay = self.policy.next_delay(attempts, outcome.retry_after, self.rng)
                if delay is not None:
                    due = self.keys.due_for(sid)
                    await self.client.zadd(due, {sid: self.now() + delay}, xx=True)
                    return
                why = f"gave up after {attempts} attempts: {outcome.reason}"
                await self._dead_letter(flight, alerts, kind, why)
            elif outcome.status is OutcomeStatus.GONE:
                why = f"endpoint gone: {outcome.reason}"
                if await self.disable(sid, destination.address, why) == "moved":
                    # The owner pointed the subscription elsewhere while this was sent: the
                    # old endpoint being gone says nothing about the new one. Send it there.
                    state = await self._load(sid, lookahead)
                    seen_version = None
                    subscription = await self.store.get(sid)
                    continue
                await self._dead_letter(flight, alerts, kind, why)
            else:
                await self._dead_letter(flight, alerts, kind, f"permanent: {outcome.reason}")
            state = await self._advance(sid, flight, lookahead)

    def _observe_end_to_end(self, channel: str, digest: bool, alerts: Sequence[Alert]) -> None:
        """Ingested -> delivered, once per alert (alerts from before ingested_at: skipped)."""
        now = self.clock()
        histogram = self.metrics.end_to_end_seconds.labels(channel, "digest" if digest else "alert")
        for alert in alerts:
            at = alert.ingested_at
            if at is None:
                continue
            if at.tzinfo is None:  # written by ingest in UTC; a naive value is UTC too
                at = at.replace(tzinfo=UTC)
            histogram.observe(max(0.0, (now - at).total_seconds()))

    async def refresh_backlog(self) -> None:
        """Set the backlog gauges from the ``due`` sorted sets (three cheap commands each)."""
        now = self.now()
        due = total = 0
        oldest: list[Any] = []
        for shard in self.shards:
            key = self.keys.due_in(shard)
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zcount(key, "-inf", now)
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
                shard_due, shard_total, shard_oldest = await pipe.execute()
            due, total, oldest = due + shard_due, total + shard_total, oldest + shard_oldest
        self.metrics.backlog.labels("due").set(due)
        self.metrics.backlog.labels("waiting").set(total - due)
        age = now - min(float(o[1]) for o in oldest) if oldest else 0.0
        self.metrics.oldest_due_seconds.set(max(0.0, age))

    async def _plan(
        self, sid: str, subscription: Subscription | None
    ) -> tuple[InFlight | None, float | None]:
        """Choose the next notification (stored as in flight) or the time to look again."""
        raw = await self.client.lrange(self.keys.queue(sid), 0, self.max_digest)
        items = [QueueItem.parse(r) for r in raw]
        usable = subscription is not None and not subscription.disabled
        policy = policy_for(subscription) if usable and subscription else None
        flight, wait_until, _ = await self._plan_and_fetch(sid, subscription, items, policy)
        return flight, wait_until

    async def _plan_and_fetch(
        self,
        sid: str,
        subscription: Subscription | None,
        items: Sequence[QueueItem],
        policy: DeliveryPolicy | None,
    ) -> tuple[InFlight | None, float | None, list[bytes | None]]:
        """Plan from the queue head ``items``; a chosen notification is stored as in flight
        and its alerts are read in the same group. Returns (flight, wait until, alerts)."""
        if not items:
            return None, None, []
        if subscription is None or subscription.disabled or policy is None:
            # Nothing to plan for: take the head alone, to be dead-lettered with the reason.
            return await self._store_and_fetch(sid, items[:1], False, "immediate")
        now = self.clock()
        sent = 0
        sent_key = None
        limit = policy.rate_limit
        if limit is not None:
            start, _ = window_bounds(now, limit.window_minutes)
            sent_key = self.keys.sent(sid, int(start.timestamp()))
            sent = int(await self.client.get(sent_key) or 0)
        queued = [Queued(item.alert_id, item.enqueued_at) for item in items]
        decision = plan(policy, now, queued, sent, self.max_digest)
        if decision.wait_until is not None:
            return None, decision.wait_until.timestamp(), []
        chosen = items[: len(decision.alert_ids)]
        count_sent = None
        if sent_key is not None and limit is not None and decision.reason == "immediate":
            count_sent = (sent_key, limit.window_minutes * 120)
        self.metrics.notifications_total.labels(
            "digest" if decision.digest else "alert", decision.reason
        ).inc()
        return await self._store_and_fetch(
            sid, chosen, decision.digest, decision.reason, count_sent
        )

    async def _store_and_fetch(
        self,
        sid: str,
        items: Sequence[QueueItem],
        digest: bool,
        reason: str,
        count_sent: tuple[str, int] | None = None,
    ) -> tuple[InFlight, None, list[bytes | None]]:
        """Store the notification of ``items`` as in flight and read its alerts (one group)."""
        alert_ids = tuple(item.alert_id for item in items)
        if digest:
            notification_id = Notification.batch(
                sid, [_stub(a, sid) for a in alert_ids], reason=reason
            ).id
        else:
            notification_id = alert_ids[0]
        flight = InFlight(
            notification_id, tuple(item.member for item in items), alert_ids, digest, reason
        )
        keys = [self.keys.inflight(sid), *(self.keys.alert(a, sid) for a in alert_ids)]

        def fill(pipe: PipelineLike) -> None:
            if count_sent is not None:
                eval_script(pipe, _COUNT, [count_sent[0]], [count_sent[1]])
            eval_script(pipe, _START, keys, [flight.dumps()])

        results = await self.batcher.run(fill)
        return flight, None, list(results[-1])

    async def _alert_raws(self, alert_ids: Sequence[str], sid: str) -> list[bytes | None]:
        keys = [self.keys.alert(a, sid) for a in alert_ids]

        def fill(pipe: PipelineLike) -> None:
            for key in keys:
                pipe.get(key)

        return await self.batcher.run(fill) if keys else []

    # --- batched groups: each touches one subscription's keys (and the due set) -------------

    def _add_load(
        self, pipe: PipelineLike, sid: str, lookahead: int, with_subscription: bool
    ) -> None:
        pipe.get(self.store.version_key)
        pipe.get(self.keys.inflight(sid))
        pipe.lrange(self.keys.queue(sid), 0, lookahead - 1)
        if with_subscription:
            pipe.get(self.store.key(sid))

    @staticmethod
    def _loaded(results: Sequence[Any], lookahead: int) -> _Loaded:
        version, flight, queue = results[0], results[1], results[2]
        return _Loaded(
            int(version or 0),
            InFlight.loads(flight) if flight else None,
            [QueueItem.parse(r) for r in queue],
            lookahead,
            results[3] if len(results) > 3 else None,
        )

    async def _load(self, sid: str, lookahead: int, *, with_subscription: bool = False) -> _Loaded:
        results = await self.batcher.run(
            lambda pipe: self._add_load(pipe, sid, lookahead, with_subscription)
        )
        return self._loaded(results, lookahead)

    async def _finish(self, sid: str) -> None:
        """Unschedule ``sid`` if its queue is empty, else leave it due (``_FINISH``)."""
        keys = [self.keys.queue(sid), self.keys.due_for(sid)]
        now = self.now()
        await self.batcher.run(lambda pipe: eval_script(pipe, _FINISH, keys, [sid, now]))

    async def _advance(
        self, sid: str, flight: InFlight, lookahead: int, outcome: DeliveryOutcome | None = None
    ) -> _Loaded:
        """Complete ``flight`` and load the next state, in one group (``_ADVANCE``, and the
        store's version beside it). With ``outcome`` (a delivery) the attempt is recorded and
        our lease extended in the same script: one shared round trip between two sends."""
        keys = [
            self.keys.attempts(flight.id, sid),
            self.keys.queue(sid),
            self.keys.inflight(sid),
            self.keys.due_for(sid),
        ]
        args: list[Any] = [
            self._attempt_entry(outcome) if outcome is not None else "",
            ALERT_TTL_SECONDS,
            # Extend our lease while a long queue drains, so no other worker takes it over.
            self.now() + self.lease_seconds if outcome is not None else "",
            sid,
            lookahead - 1,
            *flight.members,
        ]

        def fill(pipe: PipelineLike) -> None:
            eval_script(pipe, _ADVANCE, keys, args)
            pipe.get(self.store.version_key)

        queue, version = await self.batcher.run(fill)
        return _Loaded(int(version or 0), None, [QueueItem.parse(r) for r in queue], lookahead)

    def _attempt_entry(self, outcome: DeliveryOutcome) -> str:
        return json.dumps({"at": self.clock().isoformat(), **outcome.to_dict()})

    async def _record(
        self, notification_id: str, outcome: DeliveryOutcome, sid: str | None = None
    ) -> int:
        """Append to the notification's attempt log; returns how many attempts it has."""
        record = self._attempt_entry(outcome)
        key = self.keys.attempts(notification_id, sid)
        [count] = await self.batcher.run(
            lambda pipe: eval_script(pipe, _RECORD, [key], [record, ALERT_TTL_SECONDS])
        )
        return int(count)

    async def attempts(self, notification_id: str, sid: str | None = None) -> list[dict[str, Any]]:
        raw = await self.client.lrange(self.keys.attempts(notification_id, sid), 0, -1)
        return [json.loads(item) for item in raw]

    async def _dead_letter(
        self, flight: InFlight, alerts: Sequence[Alert], channel: str, reason: str
    ) -> None:
        """One ``alerts:dead`` record per alert, each with every attempt's outcome."""
        flight_sid = alerts[0].subscription_id  # a flight is one subscription's
        attempts = await self.attempts(flight.id, flight_sid)
        for alert in alerts:
            record = {
                "type": "dead_alert",
                "schema_version": 1,
                "alert": alert.model_dump(mode="json"),
                "subscription_id": alert.subscription_id,
                "notification_id": flight.id,
                "digest": flight.digest,
                "channel": channel,
                "reason": reason,
                "attempts": attempts,
                "dead_at": self.clock().isoformat(),
            }
            entry_id = await self.client.xadd(
                self.keys.alerts_dead_for(flight_sid), {DATA_FIELD: json.dumps(record)}
            )
            await self.client.set(
                self.keys.dead_entry(alert.id, flight_sid), as_text(entry_id), ex=ALERT_TTL_SECONDS
            )
            self.metrics.dead_total.labels(channel if channel in CHANNELS else "none").inc()
            log.warning("alert %s dead-lettered: %s", alert.id, reason)

    async def disable(self, sid: str, address: str, reason: str) -> str:
        """Mark the subscription disabled (it stops matching) with the reason for its owner.

        Applied to the subscription as stored *now* (``store.update``), never to the copy read
        before the send: that copy is up to a send timeout old, and writing it back reverted a
        PATCH made meanwhile or brought back a subscription deleted meanwhile. Returns
        ``"disabled"``, ``"deleted"`` (nothing to disable: it stays deleted) or ``"moved"``
        (its destination is no longer ``address``, the endpoint that said it is gone: the
        owner's newer choice wins and the subscription is left enabled).
        """
        result = "deleted"

        def change(current: Subscription) -> Subscription | None:
            nonlocal result
            if (current.webhook_url or current.email) != address:
                result = "moved"
                return None
            result = "disabled"
            if current.disabled:
                return None
            return current.model_copy(
                update={"disabled": True, "disabled_reason": reason, "updated_at": self.clock()}
            )

        await self.store.update(sid, change)
        if result == "moved":
            log.info("subscription %s: %s, but it has a new destination since", sid, reason)
        return result

    async def alert(self, alert_id: str, sid: str | None = None) -> Alert | None:
        """The stored alert (None once it expired). Without its subscription id, with several
        shards, each shard is asked (N GETs): an alert id does not name its subscription."""
        if sid is None and self.names.partitions > 1:
            for shard in range(self.names.partitions):
                raw = await self.client.get(self.names.shard_key(shard, "alert", alert_id))
                if raw:
                    return Alert.model_validate_json(raw)
            return None
        raw = await self.client.get(self.keys.alert(alert_id, sid))
        return Alert.model_validate_json(raw) if raw else None


def _stub(alert_id: str, sid: str) -> Alert:
    """Only the id matters for a digest id; the alerts themselves are loaded when sending."""
    return Alert.model_construct(id=alert_id, subscription_id=sid)
