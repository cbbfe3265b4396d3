"""Stream retention that never drops an entry some consumer group still needs.

A plain ``MAXLEN`` trims by count and would silently drop entries a lagging (or stopped)
consumer group has not read yet — exactly what "nothing is lost" forbids. Here a stream is
trimmed with ``XTRIM MINID`` to the older of two points:

* the **consumption floor**: the oldest entry any group on the stream still needs (its oldest
  pending entry, or what follows its last-delivered id);
* the **retention cut**: the ``keep`` newest entries stay for replay and inspection.

Groups created by other consumers of the stream count as well, so external readers are safe.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from services.common.streams import as_text


def _id(value: Any) -> tuple[int, int]:
    text = as_text(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def trim_point(
    group_floors: list[tuple[int, int]], keep_from: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The MINID to trim to, or None when nothing may go.

    ``group_floors``: per group, the oldest id it still needs. ``keep_from``: the oldest of
    the ``keep`` newest entries (None when the stream holds no more than ``keep``).
    """
    if keep_from is None or not group_floors:
        return None  # within retention, or no group: we cannot know who still reads it
    return min([*group_floors, keep_from])


async def group_floors(client: aioredis.Redis, stream: str) -> list[tuple[int, int]]:
    """For each consumer group, the oldest entry id it has not finished with."""
    floors = []
    for group in await client.xinfo_groups(stream):
        name = group["name"]
        if int(group["pending"]):
            summary = await client.xpending(stream, name)
            floors.append(_id(summary["min"]))
        else:
            ms, seq = _id(group["last-delivered-id"])
            floors.append((ms, seq + 1))  # everything up to and including it is done
    return floors


#: At most this many entries are looked at (and trimmed) per call, so that a large backlog is
#: worked off in steps instead of one long blocking command.
STEP = 10_000


async def trim_consumed(client: aioredis.Redis, stream: str, keep: int) -> int:
    """Trim ``stream`` towards ``keep`` newest entries without dropping unconsumed ones.

    Cheap when there is nothing to do (one XLEN), so it can run every few seconds. Returns
    the number of entries removed.
    """
    excess = await client.xlen(stream) - keep
    if excess <= 0:
        return 0
    step = min(excess, STEP)
    oldest = await client.xrange(stream, count=step + 1) or []
    keep_from = _id(oldest[step][0]) if len(oldest) > step else None
    point = trim_point(await group_floors(client, stream), keep_from)
    if point is None:
        return 0
    removed = await client.xtrim(stream, minid=_text(point), approximate=False)
    return int(removed)


async def trim_window(
    client: aioredis.Redis, stream: str, *, max_age_ms: int, max_len: int, now_ms: int
) -> int:
    """Trim a record stream (alerts, dead letters, rejections) to a time and count window.

    These streams are history for people and tools, not work for a consumer group, so they are
    cut by age and by count, whichever bites first. Both trims are approximate (Redis removes
    whole macro-nodes only), which keeps each call cheap enough to run every few seconds; the
    stream may briefly hold up to one node (100 entries by default) more than the window.
    """
    removed = await client.xtrim(stream, minid=str(max(now_ms - max_age_ms, 0)), approximate=True)
    removed += await client.xtrim(stream, maxlen=max_len, approximate=True)
    return int(removed)
