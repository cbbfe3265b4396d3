"""The partition count is fixed for the life of the data: recorded once, checked at start.

Changing ``TOPICWATCH_PARTITIONS`` on a running system would move articles and subscriptions
to other slots: dedup marks, pending stream entries, alert keys and per-subscription queues
written under the old count would no longer be found (duplicates accepted again, alerts sent
twice, queues stranded). Supporting it would need a migration that drains every stream and
moves every key; topicwatch refuses instead, with a message that says what to do. The first
process to start records the count in the ``layout`` key (``SET NX``); every later one compares.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from services.common.streams import StreamNames, as_text


class LayoutMismatch(Exception):
    """Redis holds data written with another partition count (the message says which)."""


def describe(names: StreamNames) -> dict[str, object]:
    return {"partitions": names.partitions, "tagged": names.tagged}


async def check_layout(client: aioredis.Redis, names: StreamNames) -> None:
    """Record the layout on first start; raise :class:`LayoutMismatch` when it differs."""
    wanted = describe(names)
    if names.tagged and not await client.exists(names.layout):
        # Data from before layouts were recorded is unpartitioned (one partition, no tags).
        legacy = StreamNames(names.prefix)
        if await client.exists(legacy.accepted):
            raise LayoutMismatch(
                f"Redis holds unpartitioned topicwatch data ({legacy.accepted} exists), but this "
                f"process has TOPICWATCH_PARTITIONS={names.partitions}"
                f"{' and TOPICWATCH_REDIS_CLUSTER=true' if names.partitions == 1 else ''}. "
                "Drain the pipeline and start on an empty Redis (docs/architecture.md, 'Changing "
                "the partition count'), or keep the old settings."
            )
    await client.set(names.layout, json.dumps(wanted), nx=True)
    raw = await client.get(names.layout)
    try:
        stored = json.loads(as_text(raw)) if raw is not None else wanted
    except ValueError:
        stored = {}
    if stored != wanted:
        raise LayoutMismatch(
            f"Redis holds topicwatch data written with TOPICWATCH_PARTITIONS="
            f"{stored.get('partitions', '?')} (key layout {_kind(stored)}), but this process has "
            f"TOPICWATCH_PARTITIONS={names.partitions} ({_kind(wanted)}). The partition count "
            "cannot change on a running system: articles and subscriptions would move to other "
            "slots and their dedup marks, queues and pending entries be left behind. Set it "
            "back, or drain the pipeline and start on an empty Redis (docs/architecture.md, "
            f"'Changing the partition count'); the record is the key {names.layout}."
        )


def _kind(layout: dict[str, object]) -> str:
    return "with hash tags" if layout.get("tagged") else "single-node names"
