"""Accept-once: de-duplicate an article and publish it in one atomic step.

An article is a duplicate when its canonical URL or its content hash was seen before. The
check, the marks and the XADD to ``articles:accepted`` run in one Lua script, so a crash can
never leave an article marked as seen but not published (which would lose it on retry) or
published twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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

    def keys_for(self, article: Article) -> list[str]:
        keys = [self.names.key("seen", "hash", article.content_hash)]
        if article.canonical_url:
            digest = hashlib.sha256(article.canonical_url.encode()).hexdigest()
            keys.append(self.names.key("seen", "url", digest))
        return keys

    async def publish(self, article: Article) -> DedupResult:
        """Publish unless seen; raises on Redis errors (the caller answers 503 / retries)."""
        result = await self._script(
            keys=[self.names.accepted, *self.keys_for(article)],
            args=[article.id, article.model_dump_json(), self.ttl_seconds, DATA_FIELD],
        )
        accepted, value = int(result[0]), result[1]
        existing = as_text(value)
        return DedupResult(accepted=bool(accepted), article_id=article.id if accepted else existing)
