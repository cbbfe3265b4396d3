"""Create an alert exactly once and queue its delivery, in one atomic step.

The alert id is a hash of (subscription id, article id), and creation is ``SET NX`` on the
alert's key together with every write that follows from it — the ``alerts`` stream entry, the
subscription's history stream, the alert's position in that history, and the subscription's
delivery queue — in one Lua script. Redelivered stream entries, an article published twice,
or a crash between steps can therefore never produce a second alert, nor an alert that is
recorded but never queued for delivery.

Queue members are ``"<alert id> <enqueued unix time>"``: the delivery plan (digests, rate
limits, mutes) needs to know when each alert joined the queue, on the worker's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from services.common.models import Alert, AlertArticle, utcnow
from services.common.streams import DATA_FIELD, StreamNames, as_text

#: How long an alert id is remembered (and its record kept) for exactly-once.
ALERT_TTL_SECONDS = 90 * 24 * 3600
#: Entries kept in each subscription's history stream (approximate trim: cheap in Redis).
HISTORY_MAXLEN = 10_000

_CREATE = """
local story = redis.call('GET', KEYS[7])
if story and story ~= ARGV[9] then return story end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[6]) then return 0 end
redis.call('SET', KEYS[7], ARGV[9], 'EX', ARGV[6])
redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
local pos = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', ARGV[3], ARGV[1])
redis.call('SET', KEYS[6], pos, 'EX', ARGV[6])
if ARGV[8] == '1' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('ZADD', KEYS[4], 'NX', ARGV[2], ARGV[4])
end
return 1
"""


class AlertKeys:
    """Key names of notify's delivery state, under the stream prefix.

    Every key of a subscription's delivery state - its alerts and their records, queue, in-
    flight notification, rate-limit counters, stories and history - lives in the
    subscription's shard slot (StreamNames.subscription_key), together with that shard's
    ``alerts`` record stream, ``alerts:dead`` and ``delivery:due``; so creating an alert and
    every delivery step is one slot. An alert's keys are named with its subscription id:
    ``sid`` may be left out only with one partition (one shard).
    """

    def __init__(self, names: StreamNames) -> None:
        self.names = names

    def _key(self, sid: str | None, *parts: str) -> str:
        if sid is None:
            if self.names.partitions != 1:
                raise ValueError(f"{parts[0]} key: name the subscription (several shards)")
            return self.names.shard_key(0, *parts)
        return self.names.subscription_key(sid, *parts)

    @property
    def due(self) -> str:
        """Subscriptions with something to deliver, scored by when (one shard only)."""
        return self.due_in(self.names.only_partition())

    def due_in(self, shard: int) -> str:
        return self.names.shard_key(shard, "delivery", "due")

    def due_for(self, sid: str) -> str:
        return self.due_in(self.names.shard_of(sid))

    def alerts_for(self, sid: str) -> str:
        """The ``alerts`` record stream of the subscription's shard."""
        return self.names.alerts_in(self.names.shard_of(sid))

    def alerts_dead_for(self, sid: str) -> str:
        return self.names.alerts_dead_in(self.names.shard_of(sid))

    def alert(self, alert_id: str, sid: str | None = None) -> str:
        return self._key(sid, "alert", alert_id)

    def position(self, alert_id: str, sid: str | None = None) -> str:
        """The alert's entry id in its subscription's history stream (for Last-Event-ID)."""
        return self._key(sid, "alert", alert_id, "pos")

    def attempts(self, alert_id: str, sid: str | None = None) -> str:
        """Attempt log of a notification (an alert id or a digest id)."""
        return self._key(sid, "alert", alert_id, "attempts")

    def dead_entry(self, alert_id: str, sid: str | None = None) -> str:
        """Entry id of the alert's record in ``alerts:dead`` (removed when it is replayed)."""
        return self._key(sid, "alert", alert_id, "dead")

    def queue(self, subscription_id: str) -> str:
        return self._key(subscription_id, "queue", subscription_id)

    def inflight(self, subscription_id: str) -> str:
        """The notification being attempted for a subscription: fixed until it succeeds or dies."""
        return self._key(subscription_id, "inflight", subscription_id)

    def sent(self, subscription_id: str, window_start: int) -> str:
        """Alerts sent immediately in one rate-limit window."""
        return self._key(subscription_id, "ratelimit", subscription_id, str(window_start))

    def story(self, subscription_id: str, story_id: str) -> str:
        """The alert a subscription got for a story (near-duplicate cluster), by its original."""
        return self._key(subscription_id, "story", subscription_id, story_id)

    def history(self, subscription_id: str) -> str:
        """The subscription's own alert stream: history and the source of its live stream."""
        return self._key(subscription_id, "subscription", subscription_id, "alerts")


def queue_member(alert_id: str, enqueued_at: float) -> str:
    return f"{alert_id} {enqueued_at:.6f}"


@dataclass(frozen=True, slots=True)
class QueueItem:
    member: str
    alert_id: str
    enqueued_at: datetime

    @classmethod
    def parse(cls, raw: bytes | str) -> QueueItem:
        member = as_text(raw)
        alert_id, _, ts = member.partition(" ")
        when = datetime.fromtimestamp(float(ts), UTC) if ts else utcnow()
        return cls(member, alert_id, when)


class AlertWriter:
    def __init__(self, client: aioredis.Redis, names: StreamNames) -> None:
        self.client = client
        self.names = names
        self.keys = AlertKeys(names)

    async def create(self, alert: Alert, *, now: float, deliver: bool = True) -> bool:
        """Record and queue ``alert``; False when it already existed (nothing is written).

        ``deliver=False`` records it for history and the live stream only (a subscription
        with neither webhook nor e-mail).
        """
        outcome, _ = await self.create_or_fold(alert, now=now, deliver=deliver)
        return outcome == "new"

    async def create_or_fold(
        self, alert: Alert, *, now: float, deliver: bool = True, story_id: str | None = None
    ) -> tuple[str, str]:
        """Create ``alert`` unless its subscription already has an alert for the same story.

        ``story_id`` is the near-duplicate cluster's original article (default: the alert's
        own article). Returns ``("new", id)``, ``("duplicate", id)`` when this very alert
        exists, or ``("folded", other id)`` after listing the article on the story's earlier
        alert, so one story reaches a subscriber once, with the other outlets named.
        """
        [result] = await self.create_or_fold_many([(alert, deliver, story_id)], now=now)
        return result

    async def create_or_fold_many(
        self, requests: Sequence[tuple[Alert, bool, str | None]], *, now: float
    ) -> list[tuple[str, str]]:
        """``create_or_fold`` for many (alert, deliver, story id), in order, in one pipeline.

        An article matching 500 subscriptions is 500 scripts: one round trip for all of them
        instead of one each. Every script still touches one subscription's keys (a
        non-transactional pipeline is valid on Redis Cluster), and they run in the order
        given, so an alert and a near-duplicate of it later in the batch fold as before.
        """
        if not requests:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for alert, deliver, story_id in requests:
                keys, args = self._create_call(alert, now, deliver, story_id)
                pipe.eval(_CREATE, len(keys), *keys, *args)
            created_all = await pipe.execute()
        results = []
        for (alert, deliver, story_id), created in zip(requests, created_all, strict=True):
            if isinstance(created, (bytes, str)):
                results.append(await self._fold(alert, as_text(created), now, deliver, story_id))
            else:
                results.append(("new" if created else "duplicate", alert.id))
        return results

    def _create_call(
        self, alert: Alert, now: float, deliver: bool, story_id: str | None
    ) -> tuple[list[str], list[str | int | float]]:
        sid = alert.subscription_id
        story = story_id or alert.article.id
        keys = [  # all in the subscription's shard slot (AlertKeys)
            self.keys.alert(alert.id, sid),
            self.keys.alerts_for(sid),
            self.keys.queue(sid),
            self.keys.due_for(sid),
            self.keys.history(sid),
            self.keys.position(alert.id, sid),
            self.keys.story(sid, story),
        ]
        args: list[str | int | float] = [
            alert.model_dump_json(),
            now,
            DATA_FIELD,
            sid,
            queue_member(alert.id, now),
            ALERT_TTL_SECONDS,
            HISTORY_MAXLEN,
            "1" if deliver else "0",
            alert.id,
        ]
        return keys, args

    async def _fold(
        self, alert: Alert, target: str, now: float, deliver: bool, story_id: str | None
    ) -> tuple[str, str]:
        """The story already has alert ``target`` for this subscription: list the article."""
        if await self.add_reported_by(target, alert.article, alert.subscription_id):
            return "folded", target
        # The story's alert has expired: this article starts the story again.
        story = story_id or alert.article.id
        await self.client.delete(self.keys.story(alert.subscription_id, story))
        return await self.create_or_fold(alert, now=now, deliver=deliver, story_id=story)

    async def add_reported_by(
        self, alert_id: str, article: AlertArticle, sid: str | None = None
    ) -> bool:
        """List ``article`` on the alert (once); False if the alert no longer exists.

        Optimistic (WATCH/MULTI): two processes folding into one alert at once both land.
        Delivery reads the alert record when it sends, so an alert still waiting (digest,
        mute, retry) goes out with every outlet known by then.
        """
        key = self.keys.alert(alert_id, sid)
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        await pipe.reset()
                        return False
                    current = Alert.model_validate_json(raw)
                    if article.id == current.article.id or any(
                        a.id == article.id for a in current.also_reported_by
                    ):
                        await pipe.reset()
                        return True
                    current.also_reported_by.append(article)
                    pipe.multi()
                    pipe.set(key, current.model_dump_json(), keepttl=True)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def get(self, alert_id: str, sid: str | None = None) -> Alert | None:
        raw = await self.client.get(self.keys.alert(alert_id, sid))
        return Alert.model_validate_json(raw) if raw else None

    async def get_many(
        self, alert_ids: Sequence[str], sid: str | None = None
    ) -> list[Alert | None]:
        """Alerts of one subscription (one slot: one MGET)."""
        if not alert_ids:
            return []
        raws = await self.client.mget([self.keys.alert(a, sid) for a in alert_ids])
        return [Alert.model_validate_json(raw) if raw else None for raw in raws]
