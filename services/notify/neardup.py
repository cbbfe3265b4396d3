"""Near-duplicates: the same story republished by several outlets reaches a subscriber once.

**What "near" means.** Two articles are near-duplicates when the Jaccard similarity of their
sets of word 3-shingles (every run of three consecutive tokens of the body, tokenised like
queries are) is at least :data:`THRESHOLD` = 0.4. That is what syndication looks like: an
agency story re-run by other outlets keeps most sentences verbatim, while each outlet changes
the headline (ignored here), trims or adds a paragraph, and edits a few words. A changed word
breaks the three shingles that contain it. Measured on the shared sample articles (~200
words, tests pin these): one of five paragraphs cut plus 5 words changed keeps 0.64-0.75 of
the shingles; plus 20 words changed (10 % of the text) 0.38-0.50; plus 40 words, 0.25-0.36,
by then a rewrite rather than a copy. Different stories do not come close: the most similar
pair among 36 sample articles on overlapping defence topics shares 0.025, because two
outlets' *own* reports of one event share few 3-word runs even with the same vocabulary
(which is why shingles, not single words). 0.4 catches light and medium edits with a wide
margin above unrelated text.

**How it is computed.** A MinHash signature (datasketch, 128 permutations, a fixed seed so
that every process computes the same one) estimates the Jaccard similarity as the fraction
of equal signature values (standard error ~0.043 at 0.4). Locality-sensitive hashing finds
candidates without comparing against every stored story: the signature is cut into
:data:`BANDS` = 42 bands of :data:`ROWS` = 3 values, and two articles are candidates when any
band is identical, which happens with probability 1 - (1 - s^3)^42: 0.94 at s = 0.4, 0.996 at
0.5, 0.29 at 0.2, 0.005 at 0.05. The split favours recall because a false candidate only
costs one signature comparison; candidates are then checked on the full signature.

**Where the state lives.** In Redis, so that several notify processes agree: each band is a
key holding the ids of recent articles with that band (capped, with a TTL), each signature
and each decision ("this article is a near-duplicate of X") is a key with the same TTL
(:data:`DEFAULT_TTL`: stories are republished within days, not months). One Lua script does
look-up, decision and insertion atomically, so two processes handling two copies of a story
at the same moment still agree on which came first; and asking again about an article returns
the decision already taken, so a redelivered stream entry gets the same answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis
from datasketch import MinHash

from services.common.streams import as_text
from services.notify.query import tokenize

#: Estimated Jaccard similarity of word 3-shingle sets at and above which two articles are
#: the same story (see the module docstring for why 0.4).
THRESHOLD = 0.4
#: Words per shingle.
SHINGLE_WORDS = 3
#: MinHash permutations (signature length); the seed is fixed so all processes agree.
NUM_PERM = 128
SEED = 20_191_127
#: LSH banding: 42 bands of 3 values (126 of the 128), tilted towards recall.
BANDS = 42
ROWS = 3
#: How long signatures, bands and decisions are kept (seconds).
DEFAULT_TTL = 3 * 24 * 3600
#: Ids kept per band key, newest last: a band shared by hundreds of articles (boilerplate)
#: must not make every check compare against all of them.
BAND_CAPACITY = 16
#: Bodies shorter than this many tokens are shingled together with their title.
SHORT_BODY_TOKENS = 30


def shingles(title: str, body: str, size: int = SHINGLE_WORDS) -> set[str]:
    """Word ``size``-grams of the body (with the title too when the body is very short).

    Headlines are left out on purpose: outlets rewrite them while keeping the story.
    """
    tokens = tokenize(body)
    if len(tokens) < SHORT_BODY_TOKENS:
        tokens = tokenize(title) + tokens
    if len(tokens) < size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity (what the signatures estimate)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def signature(title: str, body: str) -> np.ndarray:
    """The MinHash signature of an article: ``NUM_PERM`` unsigned 32-bit values."""
    minhash = MinHash(num_perm=NUM_PERM, seed=SEED)
    minhash.update_batch([s.encode("utf-8") for s in shingles(title, body)])
    return minhash.hashvalues.astype(np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity: the fraction of equal signature values."""
    return float(np.count_nonzero(a == b)) / len(a)


def band_digests(sig: np.ndarray) -> list[str]:
    """One short digest per band: equal digests mean an identical band."""
    raw = sig.astype("<u4").tobytes()
    width = ROWS * 4
    return [
        hashlib.blake2b(raw[i * width : (i + 1) * width], digest_size=8).hexdigest()
        for i in range(BANDS)
    ]


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    """The decision for one article: the story's first-seen article and how close this is."""

    article_id: str
    original_id: str
    similarity: float

    @property
    def is_duplicate(self) -> bool:
        return self.original_id != self.article_id


# KEYS[1] decision key of the article, KEYS[2] its signature key, KEYS[3..] its band keys.
# ARGV: article id, signature bytes, ttl, threshold, signature key prefix, decision key
# prefix, band capacity, max candidates compared.
_CHECK_SCRIPT = """
local done = redis.call('GET', KEYS[1])
if done then return done end
local id, sig, ttl, threshold = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local sig_prefix, decision_prefix = ARGV[5], ARGV[6]
local capacity, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local n = #sig / 4
local best, best_sim = nil, -1
local seen = {}
for i = 3, #KEYS do
  for _, cand in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    if cand ~= id and not seen[cand] and budget > 0 then
      seen[cand] = true
      budget = budget - 1
      local other = redis.call('GET', sig_prefix .. cand)
      if other and #other == #sig then
        local same = 0
        for j = 1, #sig, 4 do
          if string.sub(sig, j, j + 3) == string.sub(other, j, j + 3) then same = same + 1 end
        end
        local sim = same / n
        if sim > best_sim or (sim == best_sim and cand < best) then
          best, best_sim = cand, sim
        end
      end
    end
  end
end
local original, sim = id, 1
if best and best_sim >= threshold then
  original, sim = best, best_sim
  local theirs = redis.call('GET', decision_prefix .. best)
  if theirs then original = string.match(theirs, '^(%S+)') end
end
local decision = original .. ' ' .. string.format('%.6f', sim)
redis.call('SET', KEYS[1], decision, 'EX', ttl)
redis.call('SET', KEYS[2], sig, 'EX', ttl)
for i = 3, #KEYS do
  redis.call('RPUSH', KEYS[i], id)
  redis.call('LTRIM', KEYS[i], -capacity, -1)
  redis.call('EXPIRE', KEYS[i], ttl)
end
return decision
"""


class RedisNearDuplicates:
    """Near-duplicate clusters kept in Redis and shared by every notify process.

    ``check`` records the article and answers which earlier article (if any) it duplicates;
    the cluster's original is the first article of the story that was checked, and every
    later copy points at it (not at the copy it happened to resemble most), so a subscriber
    gets one alert per story with the other outlets listed.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "topicwatch",
        *,
        key_prefix: str | None = None,
        ttl_seconds: int = DEFAULT_TTL,
        threshold: float = THRESHOLD,
        max_candidates: int = 64,
    ) -> None:
        self._client = client
        # One slot for the whole index (StreamNames.neardup_key): the script reads signatures
        # of candidates it finds while running.
        self._prefix = key_prefix or f"{prefix}:neardup"
        self._ttl = ttl_seconds
        self._threshold = threshold
        self._max_candidates = max_candidates
        self._script = client.register_script(_CHECK_SCRIPT)

    def decision_key(self, article_id: str) -> str:
        return f"{self._prefix}:of:{article_id}"

    def signature_key(self, article_id: str) -> str:
        return f"{self._prefix}:sig:{article_id}"

    def band_keys(self, sig: np.ndarray) -> list[str]:
        return [f"{self._prefix}:band:{i}:{d}" for i, d in enumerate(band_digests(sig))]

    async def check(self, article_id: str, title: str, body: str) -> NearDuplicate:
        """Record the article and say which story it belongs to (idempotent per article id)."""
        return await self.check_signature(article_id, signature(title, body))

    async def check_signature(self, article_id: str, sig: np.ndarray) -> NearDuplicate:
        keys = [self.decision_key(article_id), self.signature_key(article_id)]
        keys += self.band_keys(sig)
        raw = await self._script(
            keys=keys,
            args=[
                article_id,
                sig.astype("<u4").tobytes(),
                self._ttl,
                self._threshold,
                f"{self._prefix}:sig:",
                f"{self._prefix}:of:",
                BAND_CAPACITY,
                self._max_candidates,
            ],
        )
        return _decode(article_id, raw)

    async def original_of(self, article_id: str) -> NearDuplicate | None:
        """The decision taken for an article, if it was checked (and has not expired)."""
        raw = await self._client.get(self.decision_key(article_id))
        return None if raw is None else _decode(article_id, raw)


def _decode(article_id: str, raw: bytes | str) -> NearDuplicate:
    text = as_text(raw)
    original, _, score = text.partition(" ")
    return NearDuplicate(article_id=article_id, original_id=original, similarity=float(score))
