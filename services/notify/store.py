"""Subscriptions, stored durably in Redis as JSON documents of the ``Subscription`` model.

Layout (under the stream prefix):

* ``subscription:{id}`` — the subscription's JSON (secrets and read token included; the API
  shows them once, at creation or rotation);
* ``subscriptions`` — sorted set of ids by creation time, for stable paging;
* ``subscriptions:version`` — incremented on every change, so every notify process can tell
  cheaply whether its in-memory percolator is stale;
* ``subscriptions:changes`` — a capped stream with one entry (id, op) per change, written in
  the same transaction as the version, so a process can apply just what changed instead of
  rebuilding its index of 100,000 subscriptions (it rebuilds only when it fell behind the cap).

Changes to an existing subscription (PATCH, secret rotation, the delivery worker disabling it
after a 410) go through ``update``: read, change, write under ``WATCH``, so a write that
landed in between makes the transaction fail and the change is applied again to what is
stored now. Without it, a writer holding a copy read earlier (the worker keeps one across a
send of up to 10 s) reverted a concurrent PATCH, or brought back a deleted subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import WatchError

from services.common.streams import StreamNames, as_text
from services.notify.subscriptions import Subscription

log = logging.getLogger(__name__)


#: Changes kept for incremental index updates (exact trimming keeps the count check exact).
CHANGES_KEPT = 10_000


class SubscriptionStore:
    def __init__(self, client: aioredis.Redis, names: StreamNames) -> None:
        self.client = client
        self.names = names
        # One slot for the whole store (streams.py): a write and its change notice are one MULTI.
        self.index_key = names.subscriptions_key("subscriptions")
        self.version_key = names.subscriptions_key("subscriptions", "version")
        self.changes_key = names.subscriptions_key("subscriptions", "changes")

    def _key(self, subscription_id: str) -> str:
        return self.names.subscriptions_key("subscription", subscription_id)

    def key(self, subscription_id: str) -> str:
        """Where one subscription's document is (the delivery worker reads it in a batch)."""
        return self._key(subscription_id)

    @staticmethod
    def parse(raw: bytes | str | None) -> Subscription | None:
        """A document read with ``key``: None when it is missing or does not validate."""
        return load_document(raw) if raw else None

    async def put(self, subscription: Subscription) -> None:
        """Create or replace one subscription, and tell every process its index is stale."""
        sid = subscription.id
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(sid), subscription.model_dump_json())
            pipe.zadd(self.index_key, {sid: subscription.created_at.timestamp()}, nx=True)
            pipe.incr(self.version_key)
            change: dict[Any, Any] = {"id": sid, "op": "put"}
            pipe.xadd(self.changes_key, change, maxlen=CHANGES_KEPT, approximate=False)
            await pipe.execute()

    async def update(
        self,
        subscription_id: str,
        change: Callable[[Subscription], Subscription | None],
        *,
        attempts: int = 50,
    ) -> Subscription | None:
        """Apply ``change`` to the stored subscription atomically; returns what was written.

        ``change`` gets the subscription as stored now and returns the new version, or
        ``None`` to write nothing; it may raise to refuse (the exception propagates). It can
        run more than once (each time a concurrent write won the race), so it must be pure.
        Nothing is written when the subscription does not exist (it was deleted: an update
        must not bring it back); then ``None`` is returned.

        Optimistic concurrency (``WATCH``/``MULTI``) rather than a lock: conflicts are rare
        (one owner's PATCH against one 410), a lock would need a timeout and a fencing token,
        and a field-level Lua update would have to re-implement the model's validation in
        Lua. A stored document that no longer validates is left alone.
        """
        key = self._key(subscription_id)
        async with self.client.pipeline(transaction=True) as pipe:
            for _ in range(attempts):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    current = load_document(raw) if raw else None
                    if current is None:
                        return None
                    changed = change(current)
                    if changed is None:
                        return None
                    if changed.id != subscription_id:
                        raise ValueError("an update cannot change a subscription's id")
                    pipe.multi()
                    pipe.set(key, changed.model_dump_json())
                    pipe.incr(self.version_key)
                    entry: dict[Any, Any] = {"id": subscription_id, "op": "put"}
                    pipe.xadd(self.changes_key, entry, maxlen=CHANGES_KEPT, approximate=False)
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue  # written meanwhile: apply the change to the new version
        raise RuntimeError(f"subscription {subscription_id}: {attempts} conflicting writes")

    async def get(self, subscription_id: str) -> Subscription | None:
        raw = await self.client.get(self._key(subscription_id))
        return load_document(raw) if raw else None

    async def delete(self, subscription_id: str) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(subscription_id))
            pipe.zrem(self.index_key, subscription_id)
            pipe.incr(self.version_key)
            change: dict[Any, Any] = {"id": subscription_id, "op": "delete"}
            pipe.xadd(self.changes_key, change, maxlen=CHANGES_KEPT, approximate=False)
            deleted, _, _, _ = await pipe.execute()
        return bool(deleted)

    async def page(self, offset: int = 0, limit: int = 50) -> tuple[list[Subscription], int]:
        """One page in creation order, and the total count."""
        ids = await self.client.zrange(self.index_key, offset, offset + limit - 1)
        total = await self.client.zcard(self.index_key)
        return await self._many([as_text(i) for i in ids]), int(total)

    async def all(self) -> list[Subscription]:
        return await self._many(await self.ids())

    async def ids(self) -> list[str]:
        """Every subscription id, in creation order."""
        return [as_text(i) for i in await self.client.zrange(self.index_key, 0, -1)]

    async def documents(self, ids: list[str]) -> list[bytes | str]:
        """The stored JSON of ``ids`` (those that exist), unparsed: a caller loading many
        parses them off the event loop with :func:`load_document`."""
        if not ids:
            return []
        return [raw for raw in await self.client.mget([self._key(i) for i in ids]) if raw]

    async def version(self) -> int:
        raw = await self.client.get(self.version_key)
        return int(raw or 0)

    async def position(self) -> tuple[int, str]:
        """(version, id of the newest change): where an index built now starts from."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.version_key)
            pipe.xrevrange(self.changes_key, count=1)
            raw_version, newest = await pipe.execute()
        return int(raw_version or 0), as_text(newest[0][0]) if newest else "0-0"

    async def changes_since(self, after: str) -> list[tuple[str, str, str]]:
        """(change id, subscription id, op) for every change after ``after``, oldest first."""
        entries = await self.client.xrange(self.changes_key, f"({after}", "+") or []
        return [
            (as_text(eid), as_text(fields[b"id"]), as_text(fields[b"op"]))
            for eid, fields in entries
            if fields
        ]

    async def _many(self, ids: list[str]) -> list[Subscription]:
        out = []
        for raw in await self.documents(ids):
            sub = load_document(raw)
            if sub is not None:
                out.append(sub)
        return out


def load_document(raw: bytes | str) -> Subscription | None:
    """A stored document; one that no longer validates is logged and skipped, so one bad
    document (written by an older version, or by hand) cannot stop matching for everyone."""
    try:
        return Subscription.model_validate_json(raw)
    except ValidationError as exc:
        log.error("stored subscription does not validate, skipped: %s", exc)
        return None
