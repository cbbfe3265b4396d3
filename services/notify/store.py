"""Subscriptions, stored durably in Redis as JSON documents.

Layout (under the stream prefix):

* ``subscription:{id}`` — the subscription's JSON document (secrets included; the API never
  returns them after creation);
* ``subscriptions`` — sorted set of ids by creation time, for stable paging;
* ``subscriptions:version`` — incremented on every change, so every notify process can tell
  cheaply whether its in-memory match index is stale.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis.asyncio as aioredis

from services.common.models import utcnow
from services.common.streams import StreamNames


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(12)


class SubscriptionStore:
    def __init__(self, client: aioredis.Redis, names: StreamNames) -> None:
        self.client = client
        self.names = names
        self.index_key = names.key("subscriptions")
        self.version_key = names.key("subscriptions", "version")

    def _key(self, subscription_id: str) -> str:
        return self.names.key("subscription", subscription_id)

    async def put(self, doc: dict[str, Any]) -> None:
        """Create or replace one subscription (``doc["id"]`` required)."""
        sid = doc["id"]
        created = doc.get("created_at") or utcnow().isoformat()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(sid), json.dumps(doc, default=str))
            pipe.zadd(self.index_key, {sid: _score(created)}, nx=True)
            pipe.incr(self.version_key)
            await pipe.execute()

    async def get(self, subscription_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(self._key(subscription_id))
        return json.loads(raw) if raw else None

    async def delete(self, subscription_id: str) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(subscription_id))
            pipe.zrem(self.index_key, subscription_id)
            pipe.incr(self.version_key)
            deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def page(self, offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One page in creation order, and the total count."""
        ids = await self.client.zrange(self.index_key, offset, offset + limit - 1)
        total = await self.client.zcard(self.index_key)
        docs = await self._many([_text(i) for i in ids])
        return docs, int(total)

    async def all(self) -> list[dict[str, Any]]:
        ids = await self.client.zrange(self.index_key, 0, -1)
        return await self._many([_text(i) for i in ids])

    async def version(self) -> int:
        raw = await self.client.get(self.version_key)
        return int(raw or 0)

    async def _many(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        raws = await self.client.mget([self._key(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score(created: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return utcnow().timestamp()
