"""Reliable stream consumption on top of FastStream's Redis Streams subscribers.

FastStream 0.7 gives us consumer groups, batched XREADGROUP and XACK-on-success, but three
things a pipeline that must lose nothing needs are missing, and live here once for all services:

* **Groups from ``0``.** FastStream creates a group at ``$``, so entries published before a
  service first starts would be skipped. ``ensure_groups`` creates them from ``0`` before the
  broker starts (FastStream then finds them and reads ``>``).
* **Redelivery.** An entry whose handler failed stays pending forever unless something claims
  it. Each consumer gets a second subscriber in the same group with ``min_idle_time``
  (XAUTOCLAIM), which re-runs entries left pending by a crashed or failing process.
* **Retry cap and dead letters.** A reclaimed entry that has already been delivered
  ``max_deliveries`` times is written to the dead-letter stream with the reason, then acked:
  a poison entry cannot block or spin a service, and it is never silently dropped.

Handlers receive a list of :class:`Entry` and return the ids they are done with; entries they
leave out (or all of them, if the handler raises) stay pending and come back via reclaim.
Acknowledging only what the handler returns means an entry is acked after what it produced
was written, never before.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage, RedisStreamMessage
from redis.exceptions import ResponseError

from services.common.models import DeadLetter
from services.common.settings import Settings
from services.common.streams import DATA_FIELD, as_text, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its id and the raw ``__data__`` payload (None when missing)."""

    id: str
    data: bytes | None
    fields: dict[bytes, bytes]
    deliveries: int = 1

    def text(self) -> str:
        """The payload decoded leniently, for rejections and dead letters."""
        if self.data is not None:
            return self.data.decode("utf-8", errors="replace")
        return repr(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in self.fields.items()}
        )


#: A batch handler: process entries, return the ids that are done (may be acked).
BatchHandler = Callable[[Sequence[Entry]], Awaitable[Iterable[str]]]


class DeadLetters:
    """Writes what a service cannot process to the dead-letter stream, with the reason.

    Separate from :class:`StreamConsumer` so that a handler can be given it as an explicit
    dependency (a handler is built before the consumer that will call it).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        dead_letter_stream: str,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.dead_letter_stream = dead_letter_stream
        self.on_dead_letter = on_dead_letter

    async def write(self, stream: str, group: str, entry: Entry, reason: str) -> None:
        """Dead-letter ``entry`` of ``stream`` (read by ``group``) because of ``reason``."""
        letter = DeadLetter(
            stream=stream,
            group=group,
            entry_id=entry.id,
            deliveries=entry.deliveries,
            reason=reason,
            payload=entry.text(),
        )
        await self.client.xadd(self.dead_letter_stream, encode(letter))
        log.error("dead-lettered %s from %s (%s)", entry.id, stream, reason)
        if self.on_dead_letter:
            self.on_dead_letter(stream)


def consumer_name(service: str) -> str:
    """Unique per process, so that a restarted process never inherits a stale identity."""
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


async def ensure_groups(client: aioredis.Redis, pairs: Iterable[tuple[str, str]]) -> None:
    """Create each (stream, group) from id ``0`` (and the stream if needed); keep existing ones."""
    for stream, group in pairs:
        try:
            await client.xgroup_create(name=stream, groupname=group, id="0", mkstream=True)
            log.info("created consumer group %s on %s from 0", group, stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _entry(entry_id: Any, fields: dict[bytes, bytes], deliveries: int = 1) -> Entry:
    eid = as_text(entry_id)
    data = fields.get(DATA_FIELD.encode())
    if data is None and b"data" in fields:  # legacy producers
        data = fields[b"data"]
    return Entry(id=eid, data=data, fields=fields, deliveries=deliveries)


async def tolerant_parser(message: Any, original_parser: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parser, made safe for entries that are not UTF-8 text.

    FastStream JSON-encodes every entry of a batch while parsing, so one entry with broken
    UTF-8 from a direct publisher failed the whole batch before any handler ran (and, for an
    entry without ``__data__``, failed every redelivery, so it was never dead-lettered).  The
    handlers here read ``raw_message`` only, so parse a neutral copy and keep the raw entries.
    """
    try:
        return await original_parser(message)
    except (UnicodeDecodeError, ValueError, TypeError):
        data = message.get("data")
        neutral = {DATA_FIELD.encode(): b"null"}
        safe = {**message, "data": [neutral] * len(data) if isinstance(data, list) else neutral}
        parsed = await original_parser(safe)
        parsed.raw_message = message
        return parsed


class StreamConsumer:
    """One consumer group's reading of one stream, with reclaim and dead-lettering.

    ``register(broker)`` adds two FastStream subscribers in the same group: the batch reader of
    new entries and the reclaimer of stale pending ones.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        client: aioredis.Redis,
        stream: str,
        group: str,
        consumer: str,
        dead_letter_stream: str,
        handler: BatchHandler,
        on_dead_letter: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.handler = handler
        self.on_dead_letter = on_dead_letter
        self.dead_letters = DeadLetters(client, dead_letter_stream, on_dead_letter)
        self.subscribers: list[Any] = []

    def register(self, broker: RedisBroker) -> None:
        """Attach the reader and the reclaimer to ``broker``."""
        reader = broker.subscriber(
            stream=StreamSub(
                self.stream,
                group=self.group,
                consumer=self.consumer,
                batch=True,
                max_records=self.settings.read_batch,
                polling_interval=self.settings.read_block_ms,
            ),
            title=f"{self.group}:{self.stream}",
            description=f"The {self.group} service's consumer group on {self.stream}.",
            parser=tolerant_parser,
        )
        reclaimer = broker.subscriber(
            stream=StreamSub(
                self.stream,
                group=self.group,
                consumer=self.consumer,
                min_idle_time=self.settings.reclaim_idle_ms,
                polling_interval=max(self.settings.reclaim_idle_ms // 2, 100),
            ),
            title=f"{self.group}:{self.stream}:reclaim",
            description="Re-runs entries left pending by a failed or crashed consumer.",
            include_in_schema=False,
            parser=tolerant_parser,
        )

        @reader
        async def on_batch(message: RedisBatchStreamMessage) -> None:
            raw = message.raw_message
            entries = [
                _entry(eid, fields)
                for eid, fields in zip(raw["message_ids"], raw["data"], strict=True)
            ]
            await self._run(entries, message)

        @reclaimer
        async def on_reclaimed(message: RedisStreamMessage) -> None:
            raw = message.raw_message
            eid = raw["message_ids"][0]
            deliveries = await self._deliveries(eid)
            entry = _entry(eid, raw["data"], deliveries)
            if deliveries > self.settings.max_deliveries:
                await self.dead_letter(entry, f"failed {deliveries - 1} deliveries")
                return
            await self._run([entry], message)

        self.subscribers = [reader, reclaimer]

    async def _run(self, entries: Sequence[Entry], message: Any) -> None:
        done = set(await self.handler(entries))
        if len(done) == len(entries):
            return  # FastStream acks the whole message
        if done:
            await self.client.xack(self.stream, self.group, *done)
        left = len(entries) - len(done)
        # Raising keeps the rest pending for the reclaimer; FastStream does not ack.
        raise RuntimeError(f"{left} of {len(entries)} entries left pending for retry")

    async def _deliveries(self, entry_id: bytes | str) -> int:
        pending = await self.client.xpending_range(
            self.stream, self.group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 1

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        await self.dead_letters.write(self.stream, self.group, entry, reason)
