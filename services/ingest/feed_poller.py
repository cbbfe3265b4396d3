"""Feeds in the ingest service: the feed list in Redis, the poll loop, and feed metrics.

The feed list lives in Redis (a hash of URL -> status JSON) so that ``topicwatch feeds add``
on any machine changes what every ingest process polls, and a restart keeps each feed's ETag
and counters.  Each feed has a set of item keys already ingested; an item is added to it only
after the pipeline recorded its outcome (accepted, duplicate or rejected), so a Redis failure
mid-poll means the item is tried again next time rather than lost.

That set is bounded: a sorted set scored by when each item was last *in the feed*. Every poll
that returns the feed re-scores the items it lists, then drops items not listed for
``feed_seen_days`` and keeps at most ``feed_seen_max`` newest. It stays exact for every item
still in the feed (those were just re-scored, so they are the newest); an item forgotten and
later listed again is submitted again and ingest's de-duplication window (90 days by default)
answers "duplicate".

Several ingest processes may run; a short per-feed lock keeps them from polling the same feed
at the same moment (and de-duplication makes a double poll harmless anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import httpx
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from services.common.models import utcnow
from services.common.settings import Settings
from services.common.ssrf import CheckedTarget, Resolver, UnsafeURLError, check_webhook_url
from services.common.streams import StreamNames
from services.common.urls import InvalidURL, canonical_url
from services.ingest.feeds import (
    FeedStatus,
    URLGuard,
    fetch_feed,
    item_to_submission,
    record_poll,
)
from services.ingest.pipeline import IngestPipeline, Input, dump_payload

log = logging.getLogger(__name__)

POLL_OUTCOMES: tuple[Literal["ok", "not_modified", "error"], ...] = ("ok", "not_modified", "error")
FEED_STATES = ("never", *POLL_OUTCOMES)

#: Update a feed's status only while it is still registered (a removal wins over a poll).
_SAVE_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


class FeedMetrics:
    """Poll outcomes and feeds by state (fixed label sets), and per-feed gauges.

    The per-feed gauges are labelled with the feed URL, as the issue asks for each feed's status
    in the metrics.  Their label values are the feeds an operator registered — not anything a
    producer sends — and a feed's series are removed with the feed, so the cardinality is
    bounded by configuration.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls_total = Counter(
            "topicwatch_feed_polls_total",
            "Feed polls by outcome (ok, not_modified, error).",
            ["outcome"],
            registry=registry,
        )
        for outcome in POLL_OUTCOMES:
            self.polls_total.labels(outcome)
        self.items_seen = Gauge(
            "topicwatch_feed_items_seen",
            "Distinct items a feed has delivered.",
            ["feed"],
            registry=registry,
        )
        self.last_success = Gauge(
            "topicwatch_feed_last_success_timestamp_seconds",
            "Unix time of a feed's last successful poll (0 = never).",
            ["feed"],
            registry=registry,
        )
        self.consecutive_errors = Gauge(
            "topicwatch_feed_consecutive_errors",
            "Failed polls of a feed since its last success.",
            ["feed"],
            registry=registry,
        )
        self.feeds = Gauge(
            "topicwatch_feeds",
            "Registered feeds by the outcome of their last poll.",
            ["outcome"],
            registry=registry,
        )
        self._feeds: set[str] = set()

    def observe(self, statuses: list[FeedStatus]) -> None:
        """Set the per-feed gauges; feeds no longer registered lose their series."""
        current = {status.url for status in statuses}
        for gone in self._feeds - current:
            for gauge in (self.items_seen, self.last_success, self.consecutive_errors):
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        self._feeds = current
        for outcome in FEED_STATES:
            self.feeds.labels(outcome).set(sum(s.last_outcome == outcome for s in statuses))
        for status in statuses:
            self.items_seen.labels(status.url).set(status.items_seen)
            success = status.last_success_at.timestamp() if status.last_success_at else 0
            self.last_success.labels(status.url).set(success)
            self.consecutive_errors.labels(status.url).set(status.consecutive_errors)


def address_guard(allow_private: bool, resolver: Resolver | None = None) -> URLGuard:
    """Refuse feed addresses inside our own network (loopback, private, link-local, metadata).

    Ingest fetches whatever URL a feed names, from inside the deployment; the same rules as for
    webhooks apply (notify's SSRF check: every resolved address must be public), checked when
    the feed is added and before every request, redirects included.
    ``TOPICWATCH_ALLOW_PRIVATE_FEEDS=true`` lifts the private-address rule (dev and tests).
    The checked target it returns is what ``fetch_feed`` connects to. ``resolver`` replaces
    the system's DNS lookup (tests script DNS answers with it).
    """

    async def guard(url: str) -> CheckedTarget:
        try:
            return await check_webhook_url(url, allow_private=allow_private, resolver=resolver)
        except UnsafeURLError as exc:
            raise ValueError(exc.reason.replace("webhook host", "host")) from None

    return guard


def validate_feed_url(url: str) -> str:
    """The URL as given, stripped, if it is an absolute http(s) URL; raises ``InvalidURL``."""
    text = url.strip()
    canonical_url(text)  # raises with the reason
    return text


#: Turn a feed's seen-set written by an older topicwatch (a plain set, unbounded) into the
#: sorted set used now, scoring every remembered item "seen now" so nothing is re-ingested.
_SEEN_TO_SORTED = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'set' then return 0 end
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
for i = 1, #members, 500 do
  local args = {}
  for j = i, math.min(i + 499, #members) do
    args[#args + 1] = ARGV[1]
    args[#args + 1] = members[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
return #members
"""


class FeedRegistry:
    """The feed list and per-feed state in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        names: StreamNames,
        *,
        seen_days: float = 30.0,
        seen_max: int = 10_000,
    ) -> None:
        self.client = client
        self.names = names
        self.key = names.feeds_key("feeds")  # one slot with the seen-sets (streams.py)
        self.seen_days = seen_days
        self.seen_max = seen_max
        self._save = client.register_script(_SAVE_IF_PRESENT)
        self._seen_to_sorted = client.register_script(_SEEN_TO_SORTED)

    def seen_key(self, url: str) -> str:
        return self.names.feeds_key("feeds", "seen", hashlib.sha256(url.encode()).hexdigest()[:24])

    def lock_key(self, url: str) -> str:
        return self.names.feeds_key("feeds", "lock", hashlib.sha256(url.encode()).hexdigest()[:24])

    async def add(self, url: str) -> tuple[FeedStatus, bool]:
        """Register a feed; returns its status and whether it was new."""
        url = validate_feed_url(url)
        status = FeedStatus(url=url)
        created = await self.client.hsetnx(self.key, url, status.model_dump_json())
        if not created:
            existing = await self.get(url)
            return (existing or status), False
        return status, True

    async def remove(self, url: str) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key, url.strip())
            pipe.delete(self.seen_key(url.strip()))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def get(self, url: str) -> FeedStatus | None:
        raw = await self.client.hget(self.key, url)
        return FeedStatus.model_validate_json(raw) if raw else None

    async def list(self) -> list[FeedStatus]:
        raw = await self.client.hgetall(self.key)
        statuses = [FeedStatus.model_validate_json(value) for value in raw.values()]
        return sorted(statuses, key=lambda status: status.url)

    async def save(self, status: FeedStatus) -> bool:
        return bool(await self._save(keys=[self.key], args=[status.url, status.model_dump_json()]))

    async def already_seen(self, url: str, item_keys: Sequence[str], now: float) -> set[str]:
        """Which of ``item_keys`` (the items the feed lists now) were ingested before; those
        are re-scored as seen ``now``, so items still listed are never forgotten."""
        if not item_keys:
            return set()
        key = self.seen_key(url)
        await self._seen_to_sorted(keys=[key], args=[now])
        scores = await self.client.zmscore(key, [*item_keys])
        seen: set[str] = {
            item for item, score in zip(item_keys, scores, strict=True) if score is not None
        }
        if seen:
            await self.client.zadd(key, dict.fromkeys(seen, now), xx=True)
        return seen

    async def mark_seen(self, url: str, item_key: str, now: float) -> None:
        await self.client.zadd(self.seen_key(url), {item_key: now})

    async def forget_old(self, url: str, now: float) -> int:
        """Drop items not listed for ``seen_days``, then all but the ``seen_max`` newest."""
        key = self.seen_key(url)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", f"({now - self.seen_days * 86_400}")
            pipe.zremrangebyrank(key, 0, -(self.seen_max + 1))
            old, extra = await pipe.execute()
        return int(old) + int(extra)


class FeedPoller:
    """Polls every registered feed every ``settings.feed_poll_interval`` seconds."""

    def __init__(
        self,
        registry: FeedRegistry,
        pipeline: IngestPipeline,
        settings: Settings,
        metrics: FeedMetrics,
        *,
        timeout: float = 20.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.settings = settings
        self.metrics = metrics
        self.timeout = timeout
        self.wake = asyncio.Event()
        self.guard = address_guard(settings.allow_private_feeds, resolver)

    async def check(self, url: str) -> str:
        """The feed URL if it may be polled; raises ``InvalidURL`` saying why not."""
        url = validate_feed_url(url)
        try:
            await self.guard(url)
        except (ValueError, OSError) as exc:
            raise InvalidURL(str(exc)) from exc
        return url

    async def poll(self, client: httpx.AsyncClient, url: str) -> FeedStatus | None:
        """One conditional fetch of one feed; new items go through the pipeline."""
        lock_ms = int(max(self.settings.feed_poll_interval, self.timeout) * 1000)
        if not await self.registry.client.set(
            self.registry.lock_key(url), "1", nx=True, px=lock_ms
        ):
            return await self.registry.get(url)  # another process is polling it right now
        try:
            status = await self.registry.get(url)
            if status is None:
                return None
            fetch = await fetch_feed(
                client,
                url,
                etag=status.etag,
                last_modified=status.last_modified,
                guard=self.guard,
            )
            new_items = 0
            if fetch.feed is not None:
                now = time.time()
                seen = await self.registry.already_seen(
                    url, [item.key for item in fetch.feed.items], now
                )
                fresh = []
                for item in reversed(fetch.feed.items):  # oldest first
                    if item.key not in seen:
                        seen.add(item.key)
                        fresh.append(item)
                payloads = [
                    item_to_submission(item, feed_url=url, feed_title=fetch.feed.title)
                    for item in fresh
                ]
                # Normalised together, recorded in one round trip; an item is marked seen only
                # once its outcome is stored (one Redis refused is fetched and tried again).
                outcomes = await self.pipeline.submit_many(
                    [Input(payload, dump_payload(payload)) for payload in payloads], "feed"
                )
                for item, outcome in zip(fresh, outcomes, strict=True):
                    if outcome is not None:
                        await self.registry.mark_seen(url, item.key, now)
                        new_items += 1
                await self.registry.forget_old(url, now)
            self.metrics.polls_total.labels(fetch.outcome).inc()
            # Re-read: the counters must add to what is stored, not to a stale copy.
            latest = await self.registry.get(url) or status
            updated = record_poll(latest, fetch, new_items=new_items, now=utcnow())
            await self.registry.save(updated)
            if fetch.outcome == "error":
                log.warning("feed %s: %s", url, fetch.error)
            return updated
        finally:
            await self.registry.client.delete(self.registry.lock_key(url))

    def client(self) -> httpx.AsyncClient:
        """The HTTP client feeds are fetched with.

        ``trust_env=False``: a proxy from the environment would connect on our behalf to
        whatever the name resolves to there, defeating the address pinning.
        """
        return httpx.AsyncClient(timeout=self.timeout, trust_env=False, follow_redirects=False)

    async def poll_all(self, client: httpx.AsyncClient) -> list[FeedStatus]:
        results = []
        for status in await self.registry.list():
            polled = await self.poll(client, status.url)
            if polled is not None:
                results.append(polled)
        self.metrics.observe(await self.registry.list())
        return results

    def _due(self, status: FeedStatus, now: datetime) -> bool:
        if status.last_polled_at is None:
            return True
        return (now - status.last_polled_at).total_seconds() >= self.settings.feed_poll_interval

    async def seed(self) -> None:
        """Register the feeds named in ``TOPICWATCH_FEEDS`` (kept if already present)."""
        for url in self.settings.feeds:
            try:
                await self.registry.add(await self.check(url))
            except InvalidURL as exc:
                log.error("TOPICWATCH_FEEDS: %r is not a feed URL: %s", url, exc)

    async def run(self) -> None:
        """The background loop: poll what is due, then sleep until the next is due (or woken)."""
        await self.seed()
        async with self.client() as client:
            while True:
                try:
                    for status in await self.registry.list():
                        if self._due(status, utcnow()):
                            await self.poll(client, status.url)
                    self.metrics.observe(await self.registry.list())
                except RedisError as exc:
                    log.warning("feed poll interrupted by Redis: %s", exc)
                self.wake.clear()
                tick = min(self.settings.feed_poll_interval, 5.0)
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout=tick)
                except TimeoutError:
                    pass
