"""Stream names, every Redis key family and its hash slot, and the wire format of entries.

Every entry has one field, ``__data__``, holding plain JSON: FastStream consumers parse it
as the message body, and producers outside topicwatch can write it with a bare ``XADD``.

**Key layout** (the reasoning is in docs/architecture.md, "Key layout"). A Redis Cluster runs a
script or a ``MULTI`` only when all its keys hash to one slot, and a key's slot is that of its
*hash tag* (the text between the first ``{`` and ``}``) when it has one. So every key family
here belongs to one of four kinds of slot, named by :class:`StreamNames`:

==================  ========================  ================================================
slot                tag                       families
==================  ========================  ================================================
none (global)       no tag                    ``articles:ingest`` (public contract),
                                              ``articles:rejected``, ``dead-letters``,
                                              ``taxonomy``, ``layout``: one key each, only
                                              ever used by single-key commands
article partition   ``{p<n>...}``             ``articles:accepted``, ``articles:classified``,
                                              ``seen:hash:*``, ``seen:url:*`` (accept-once)
subscription shard  ``{s<n>...}``             ``alerts``, ``alerts:dead``, ``delivery:due``,
                                              ``alert:*``, ``queue:*``, ``inflight:*``,
                                              ``ratelimit:*``, ``story:*``,
                                              ``subscription:<id>:alerts``
catalogue           ``{subs}``, ``{feeds}``,  the subscription store (records, index, version,
                    ``{neardup}``             changes), the feed registry and its seen-sets,
                                              the near-duplicate index (its script reads
                                              signatures it only learns while running)
==================  ========================  ================================================

Tags are used only when the layout is *partitioned* (``TOPICWATCH_REDIS_CLUSTER=true`` or
``TOPICWATCH_PARTITIONS`` > 1). A single node with one partition keeps exactly the key names
topicwatch always had, so an existing deployment keeps its data.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

if TYPE_CHECKING:
    from services.common.settings import Settings

DATA_FIELD = "__data__"

#: Hash slots of a Redis Cluster.
HASH_SLOTS = REDIS_CLUSTER_HASH_SLOTS

#: Tags of the catalogue slots (see the module docstring).
SUBSCRIPTIONS_TAG = "subs"
FEEDS_TAG = "feeds"
NEARDUP_TAG = "neardup"


@functools.lru_cache(maxsize=4096)
def spread_tag(kind: str, index: int, count: int) -> str:
    """The hash tag of partition (or shard) ``index`` of ``count``: ``<kind><index>``, or
    ``<kind><index>.<k>`` for the first ``k`` that puts it in the ``index``-th ``count``-th of
    the slot space.

    Why search: the natural tags hash anywhere (``p0``, ``p1``, ``p2`` all fall on two of
    three masters of an evenly split cluster). ``valkey-cli --cluster create`` (and
    ``redis-cli``) split the 16,384 slots into equal consecutive ranges, one per master, so a
    tag whose slot is in its own ``1/count`` of the range puts ``count`` partitions on
    ``count`` masters (and spreads them evenly over any other number). Deterministic: every
    process computes the same tags; ``count`` ≤ 1024 keeps the search short (~count tries).
    """
    lo, hi = index * HASH_SLOTS // count, (index + 1) * HASH_SLOTS // count
    k = 0
    while True:
        tag = f"{kind}{index}" if k == 0 else f"{kind}{index}.{k}"
        if lo <= key_slot(tag.encode()) < hi:
            return tag
        k += 1


def stable_bucket(identity: str, count: int) -> int:
    """``identity``'s bucket of ``count``, the same in every process and Python version
    (CRC-32, not ``hash()``, which is salted per process)."""
    if count == 1:
        return 0
    return zlib.crc32(identity.encode("utf-8")) % count


@dataclass(frozen=True, slots=True)
class StreamNames:
    """Every stream and key name, under one configurable prefix, with its slot.

    ``partitions`` splits the pipeline streams (and the subscription state) into that many
    slots; ``tagged`` (cluster mode, or more than one partition) puts hash tags in the names.
    ``StreamNames()`` is the single-node default: today's names, no tags.
    """

    prefix: str = "topicwatch"
    partitions: int = 1
    tagged: bool = False

    @classmethod
    def for_settings(cls, settings: Settings) -> StreamNames:
        """The names a process with ``settings`` uses."""
        return cls(settings.stream_prefix, settings.partitions, settings.partitioned)

    # --- global keys: no tag, single-key commands only ---------------------------------------
    @property
    def ingest(self) -> str:
        """Public entry point: anyone may XADD an article submission here. One stream in every
        layout: its name is a contract with outside producers (ingest routes what it reads)."""
        return f"{self.prefix}:articles:ingest"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}:articles:rejected"

    @property
    def dead_letters(self) -> str:
        """Stream entries a service failed to process ``max_deliveries`` times."""
        return f"{self.prefix}:dead-letters"

    @property
    def taxonomy(self) -> str:
        """Key where classify announces the taxonomy in use: JSON {version, topics: [ids]}."""
        return f"{self.prefix}:taxonomy"

    @property
    def layout(self) -> str:
        """Key recording the partition count the data was written with (see layout.py)."""
        return f"{self.prefix}:layout"

    def key(self, *parts: str) -> str:
        """A global key under the prefix: single-key commands only (see the module doc)."""
        return ":".join((self.prefix, *parts))

    def tagged_key(self, tag: str, *parts: str) -> str:
        """``prefix:{tag}:parts...`` when partitioned, else ``prefix:parts...`` (the names of
        before partitions existed)."""
        if not self.tagged:
            return self.key(*parts)
        return ":".join((self.prefix, f"{{{tag}}}", *parts))

    # --- article partitions -------------------------------------------------------------------
    def partition_tag(self, partition: int) -> str:
        self._check(partition)
        return spread_tag("p", partition, self.partitions)

    def partition_of(self, article_id: str) -> int:
        """The partition owning an article: by its id, which is its dedup identity (derived
        from the canonical URL, else the content hash: models.article_id_for)."""
        return stable_bucket(article_id, self.partitions)

    def accepted_in(self, partition: int) -> str:
        return self.tagged_key(self.partition_tag(partition), "articles", "accepted")

    def classified_in(self, partition: int) -> str:
        return self.tagged_key(self.partition_tag(partition), "articles", "classified")

    def seen(self, partition: int, kind: str, digest: str) -> str:
        """Accept-once mark (kind ``hash`` or ``url``) in the partition that owns the article."""
        return self.tagged_key(self.partition_tag(partition), "seen", kind, digest)

    @property
    def accepted_streams(self) -> list[str]:
        return [self.accepted_in(p) for p in range(self.partitions)]

    @property
    def classified_streams(self) -> list[str]:
        return [self.classified_in(p) for p in range(self.partitions)]

    @property
    def accepted(self) -> str:
        """The accepted stream when there is one partition (else: :meth:`accepted_in`)."""
        return self.accepted_in(self.only_partition())

    @property
    def classified(self) -> str:
        """The classified stream when there is one partition (else: :meth:`classified_in`)."""
        return self.classified_in(self.only_partition())

    # --- subscription shards ------------------------------------------------------------------
    def shard_tag(self, shard: int) -> str:
        self._check(shard)
        return spread_tag("s", shard, self.partitions)

    def shard_of(self, subscription_id: str) -> int:
        """The shard holding a subscription's alerts, queue and history (as many shards as
        partitions)."""
        return stable_bucket(subscription_id, self.partitions)

    def shard_key(self, shard: int, *parts: str) -> str:
        return self.tagged_key(self.shard_tag(shard), *parts)

    def subscription_key(self, subscription_id: str, *parts: str) -> str:
        """A key of one subscription's delivery state, in the subscription's shard."""
        return self.shard_key(self.shard_of(subscription_id), *parts)

    def alerts_in(self, shard: int) -> str:
        """The record of every alert of the shard's subscriptions (one entry per alert)."""
        return self.shard_key(shard, "alerts")

    def alerts_dead_in(self, shard: int) -> str:
        """Alerts of the shard whose delivery failed for good, with every attempt's outcome."""
        return self.shard_key(shard, "alerts", "dead")

    @property
    def alerts_streams(self) -> list[str]:
        return [self.alerts_in(s) for s in range(self.partitions)]

    @property
    def alerts_dead_streams(self) -> list[str]:
        return [self.alerts_dead_in(s) for s in range(self.partitions)]

    @property
    def alerts(self) -> str:
        """The alerts record stream when there is one shard (else: :meth:`alerts_in`)."""
        return self.alerts_in(self.only_partition())

    @property
    def alerts_dead(self) -> str:
        """Alerts whose delivery failed for good, when there is one shard."""
        return self.alerts_dead_in(self.only_partition())

    # --- catalogue slots ----------------------------------------------------------------------
    def subscriptions_key(self, *parts: str) -> str:
        """The subscription store (records, index, version, changes): one slot, so that a
        write and its change notice are one ``MULTI``."""
        return self.tagged_key(SUBSCRIPTIONS_TAG, *parts)

    def feeds_key(self, *parts: str) -> str:
        """The feed registry and each feed's seen-set: one slot (removal is one ``MULTI``)."""
        return self.tagged_key(FEEDS_TAG, *parts)

    def neardup_key(self, *parts: str) -> str:
        """The near-duplicate index: one slot, because its script reads the signatures of
        candidates it finds while running (keys it cannot declare)."""
        return self.tagged_key(NEARDUP_TAG, *parts)

    # --- helpers ------------------------------------------------------------------------------
    def _check(self, index: int) -> None:
        if not 0 <= index < self.partitions:
            raise ValueError(f"partition {index} outside 0..{self.partitions - 1}")

    def only_partition(self) -> int:
        """0, the one partition; an error naming the way out when there are several."""
        if self.partitions != 1:
            raise ValueError(
                f"{self.partitions} partitions: name one (accepted_in(p), classified_in(p), "
                "alerts_in(shard)...)"
            )
        return 0


# Consumer group names, one per service.
GROUP_INGEST = "ingest"
GROUP_CLASSIFY = "classify"
GROUP_NOTIFY = "notify"


def as_text(value: Any) -> str:
    """A Redis reply value as ``str``: the clients run without ``decode_responses`` (entries
    carry raw bytes), so ids, fields and members come back as bytes; undecodable bytes are
    replaced, never raised on (a payload is shown, not trusted)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def encode(event: BaseModel) -> dict[Any, Any]:
    """The XADD field map for an event."""
    return {DATA_FIELD: event.model_dump_json()}
