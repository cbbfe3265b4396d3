"""Accept-once: de-duplicate an article and publish it in one atomic step.

An article is a duplicate when its canonical URL or its content hash was seen before. The
check, the marks and the XADD to ``articles:accepted`` run in one Lua script, so a crash can
never leave an article marked as seen but not published (which would lose it on retry) or
published twice.

With partitions (docs/scaling.md, "Key layout") the article's id - its dedup identity, from
the canonical URL, else the content hash - picks the partition; the script touches that
partition's marks and its ``articles:accepted`` only (one hash slot). So the same URL is
always caught; the same text under two different URLs is caught when both land in one
partition (always with one partition).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.common.models import Article
from services.common.streams import DATA_FIELD, StreamNames, as_text

_ACCEPT_ONCE = """
for i = 2, #KEYS do
  local existing = redis.call('GET', KEYS[i])
  if existing then return {0, existing} end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[3])
end
local entry = redis.call('XADD', KEYS[1], '*', ARGV[4], ARGV[2])
return {1, entry}
"""

#: How long an article is remembered for de-duplication (news is rarely re-sent later).
DEFAULT_TTL_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True, slots=True)
class DedupResult:
    accepted: bool
    article_id: str
    """For a duplicate: the id of the article it duplicates."""


class AcceptOnce:
    """Publishes each distinct article to ``articles:accepted`` exactly once."""

    def __init__(
        self, client: aioredis.Redis, names: StreamNames, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> None:
        self.client = client
        self.names = names
        self.ttl_seconds = ttl_seconds
        self._script = client.register_script(_ACCEPT_ONCE)

    def partition_of(self, article: Article) -> int:
        return self.names.partition_of(article.id)

    def keys_for(self, article: Article) -> list[str]:
        partition = self.partition_of(article)
        keys = [self.names.seen(partition, "hash", article.content_hash)]
        if article.canonical_url:
            digest = hashlib.sha256(article.canonical_url.encode()).hexdigest()
            keys.append(self.names.seen(partition, "url", digest))
        return keys

    def command(self, article: Article) -> tuple[list[str], list[str | int]]:
        """The script's keys (the article's partition: one slot) and arguments."""
        keys = [self.names.accepted_in(self.partition_of(article)), *self.keys_for(article)]
        return keys, [article.id, article.model_dump_json(), self.ttl_seconds, DATA_FIELD]

    async def publish(self, article: Article) -> DedupResult:
        """Publish unless seen; raises on Redis errors (the caller answers 503 / retries)."""
        keys, args = self.command(article)
        return self.result(article, await self._script(keys=keys, args=args))

    def queue(self, pipe: Any, article: Article) -> None:
        """Add the script for ``article`` to a pipeline (one round trip for a whole batch);
        read its reply with :meth:`result`. A ``NoScriptError`` reply (the server lost its
        script cache) means: :meth:`publish` it, which loads the script."""
        keys, args = self.command(article)
        pipe.evalsha(self._script.sha, len(keys), *keys, *args)

    @staticmethod
    def result(article: Article, reply: Any) -> DedupResult:
        accepted, value = int(reply[0]), reply[1]
        existing = as_text(value)
        return DedupResult(accepted=bool(accepted), article_id=article.id if accepted else existing)
