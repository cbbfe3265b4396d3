"""Reliable stream consumption on top of FastStream's Redis Streams subscribers.

FastStream 0.7 gives us consumer groups, batched XREADGROUP and XACK-on-success, but three
things a pipeline that must lose nothing needs are missing, and live here once for all services:

* **Groups from ``0``.** FastStream creates a group at ``$``, so entries published before a
  service first starts would be skipped. ``ensure_groups`` creates them from ``0`` before the
  broker starts (FastStream then finds them and reads ``>``).
* **Redelivery.** An entry whose handler failed stays pending forever unless something claims
  it. Each consumer runs a reclaimer (XAUTOCLAIM, our own loop rather than FastStream's
  ``min_idle_time`` subscriber) which re-runs entries left pending by a crashed or failing
  process. It claims under its **own consumer name** (``<reader>:reclaim``), and while a
  batch runs its entries are kept fresh (XCLAIM JUSTID to their owner), so a batch that is
  merely slow is never claimed and run a second time concurrently.
* **Retry cap and dead letters.** A reclaimed entry that has already been delivered
  ``max_deliveries`` times is written to the dead-letter stream with the reason, then acked:
  a poison entry cannot block or spin a service, and it is never silently dropped. A pending
  entry deleted from the stream (XDEL, or a producer's ``XADD MAXLEN``) comes back from
  XAUTOCLAIM among the deleted ids: it is dead-lettered with that reason, so retention is
  never wedged behind it.
* **Poison isolation.** When a batch handler raises, the batch's entries are run one by one
  at once: the good ones are done and acked now, and only the entry that fails again stays
  pending, to be retried (and dead-lettered) alone.
* **Dead consumers leave.** Every process reads under a name with its pid; once nothing is
  pending on a consumer that has been idle for a while, the reclaimer removes it from the
  group (atomically: only if it still has nothing pending), so groups do not collect a
  consumer per restart.

* **Replicated before acknowledged** (``TOPICWATCH_REDIS_WAIT_REPLICAS``): a batch's ack waits
  until every master's replicas confirm its writes (:mod:`services.common.replication`), so a
  failover cannot take back an output whose input was already acknowledged.

Handlers receive a list of :class:`Entry` and return the ids they are done with; entries they
leave out (or all of them, if the handler raises) stay pending and come back via reclaim.
Acknowledging only what the handler returns means an entry is acked after what it produced
was written, never before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.models import DeadLetter
from services.common.replication import NotReplicated, ReplicationBarrier
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


#: Entries claimed per XAUTOCLAIM call by the reclaimer.
RECLAIM_BATCH = 100

# Keep entries fresh for their owner while it works on them; never take one back from a
# consumer that has claimed it meanwhile (ARGV: group, owner, ids...).
_KEEP_FRESH = """
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
"""

# Remove a consumer only while nothing is pending on it (ARGV: group, consumer): deleting one
# that holds entries would make them unclaimable.
_DROP_IF_IDLE = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


class StreamConsumer:
    """One consumer group's reading of one stream, with reclaim and dead-lettering.

    ``register(broker)`` adds the FastStream batch reader of new entries; ``reclaim_forever``
    is the reclaimer of stale pending entries, run as a task next to it (the Runtime runs it
    as a background loop once the broker started).
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
        self.reclaimer = f"{consumer}:reclaim"
        self.dead_letter_stream = dead_letter_stream
        self.handler = handler
        self.on_dead_letter = on_dead_letter
        self.dead_letters = DeadLetters(client, dead_letter_stream, on_dead_letter)
        self.barrier = (
            ReplicationBarrier(
                client,
                settings.stream_prefix,
                settings.redis_wait_replicas,
                settings.redis_wait_timeout_ms,
            )
            if settings.redis_wait_replicas
            else None
        )
        self.subscribers: list[Any] = []
        self._keep_fresh = client.register_script(_KEEP_FRESH)
        self._drop_if_idle = client.register_script(_DROP_IF_IDLE)
        self._last_cleanup = 0.0

    def register(self, broker: RedisBroker) -> None:
        """Attach the batch reader to ``broker`` (the reclaimer is :meth:`reclaim_forever`)."""
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

        @reader
        async def on_batch(message: RedisBatchStreamMessage) -> None:
            raw = message.raw_message
            entries = [
                _entry(eid, fields)
                for eid, fields in zip(raw["message_ids"], raw["data"], strict=True)
            ]
            done = await self.process(entries, self.consumer, ack=False)
            if len(done) == len(entries):
                return  # FastStream acks the whole batch
            if done:
                await self.client.xack(self.stream, self.group, *done)
            left = len(entries) - len(done)
            # Raising keeps the rest pending for the reclaimer; FastStream does not ack.
            raise RuntimeError(f"{left} of {len(entries)} entries left pending for retry")

        self.subscribers = [reader]

    # --- running a batch -------------------------------------------------------------------
    async def process(self, entries: Sequence[Entry], owner: str, *, ack: bool) -> set[str]:
        """Run the handler over ``entries`` (pending on ``owner``); the ids that are done.

        If the handler raises, each entry is run alone, so one poison entry cannot hold back
        the rest of its batch. With ``ack`` the done ids are acknowledged here.
        """
        try:
            done = await self._run_fresh(entries, owner)
        except Exception as exc:
            if len(entries) == 1 or isinstance(exc, RedisConnectionError | RedisTimeoutError):
                log.warning(
                    "%s: %d entries failed (%s: %s); left pending for retry",
                    self.stream,
                    len(entries),
                    type(exc).__name__,
                    exc,
                )
                done = set()
            else:
                log.warning(
                    "%s: a batch of %d failed (%s: %s); running its entries one by one",
                    self.stream,
                    len(entries),
                    type(exc).__name__,
                    exc,
                )
                done = set()
                for entry in entries:
                    try:
                        done |= await self._run_fresh([entry], owner)
                    except Exception as alone:
                        log.warning(
                            "%s: entry %s failed alone (%s: %s); left pending for retry",
                            self.stream,
                            entry.id,
                            type(alone).__name__,
                            alone,
                        )
        if done and self.barrier is not None:
            try:
                await self.barrier.wait()
            except (NotReplicated, RedisError) as exc:
                log.warning(
                    "%s: %d entries done but their writes not confirmed by a replica (%s: %s); "
                    "left pending, to run again",
                    self.stream,
                    len(done),
                    type(exc).__name__,
                    exc,
                )
                done = set()
        if ack and done:
            await self.client.xack(self.stream, self.group, *done)
        return done

    async def _run_fresh(self, entries: Sequence[Entry], owner: str) -> set[str]:
        """The handler, while a companion task keeps the entries' idle time low."""
        keeper = asyncio.create_task(self._keep_entries_fresh([e.id for e in entries], owner))
        try:
            return set(await self.handler(entries))
        finally:
            keeper.cancel()
            # gather, not ``suppress(CancelledError): await keeper``: a cancel of *this* task
            # that arrives while it waits for the keeper comes as the same CancelledError,
            # and swallowing it left a stopping service's reclaim loop running forever.
            await asyncio.gather(keeper, return_exceptions=True)

    async def _keep_entries_fresh(self, ids: list[str], owner: str) -> None:
        interval = self.settings.reclaim_idle_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._keep_fresh(keys=[self.stream], args=[self.group, owner, *ids])
            except RedisError as exc:  # the handler will meet the same outage
                log.debug("could not keep %d entries fresh: %s", len(ids), exc)

    # --- reclaiming ------------------------------------------------------------------------
    async def reclaim_forever(self) -> None:
        """Claim and re-run entries pending too long anywhere in the group, forever.

        While Redis is unreachable it retries with a doubling delay (up to 30 s), logging
        each failure; the first success resets it.
        """
        interval = max(self.settings.reclaim_idle_ms // 2, 100) / 1000
        cursor = "0-0"
        failures = 0
        while True:
            try:
                cursor = await self.reclaim_once(cursor)
                if cursor == "0-0":  # a full pass over the pending entries
                    await self.remove_dead_consumers()
                failures = 0
            except RedisError as exc:
                failures += 1
                delay = min(interval * 2 ** min(failures, 8), 30.0)
                log.warning(
                    "%s: reclaim failed (%s: %s); retrying in %.1fs",
                    self.stream,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                cursor = "0-0"
                await asyncio.sleep(delay)
                continue
            if cursor == "0-0":
                await asyncio.sleep(interval)

    async def reclaim_once(self, cursor: str = "0-0") -> str:
        """One XAUTOCLAIM step from ``cursor``: re-run, dead-letter or drop what it returns.

        Returns the next cursor ("0-0" once the whole pending list was scanned).
        """
        reply = await self.client.xautoclaim(
            self.stream,
            self.group,
            self.reclaimer,
            min_idle_time=self.settings.reclaim_idle_ms,
            start_id=cursor,
            count=RECLAIM_BATCH,
        )
        next_id = as_text(reply[0])
        claimed = list(reply[1])
        deleted = [as_text(eid) for eid in (reply[2] if len(reply) > 2 else [])]
        for eid in deleted:
            # Redis has already dropped it from the pending list: record why it never ran.
            await self.dead_letter(
                Entry(id=eid, data=None, fields={}, deliveries=0),
                "deleted from the stream (XDEL or a trim) before it was processed",
            )
        if not claimed:
            return next_id
        deliveries = await self._deliveries([as_text(eid) for eid, _ in claimed])
        run: list[Entry] = []
        for eid, fields in claimed:
            entry = _entry(eid, fields, deliveries.get(as_text(eid), 1))
            if entry.deliveries > self.settings.max_deliveries:
                await self.dead_letter(entry, f"failed {entry.deliveries - 1} deliveries")
                await self.client.xack(self.stream, self.group, entry.id)
            else:
                run.append(entry)
        if run:
            await self.process(run, self.reclaimer, ack=True)
        return next_id

    async def _deliveries(self, ids: list[str]) -> dict[str, int]:
        pending = await self.client.xpending_range(
            self.stream,
            self.group,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + 1000,  # others pending on us in the range, too
            consumername=self.reclaimer,
        )
        return {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}

    async def remove_dead_consumers(self) -> list[str]:
        """Remove consumers that hold nothing and have been idle longer than a live one can be.

        A live reader calls XREADGROUP every ``read_block_ms`` and holds what it works on, so
        one idle for longer than the reclaim timeout with nothing pending is a process that is
        gone (its name has its pid). Should a live one be removed anyway, its next read simply
        adds it back: the removal checks, atomically, that nothing is pending on it.
        """
        now = time.monotonic()
        idle_limit = max(self.settings.reclaim_idle_ms, 3 * self.settings.read_block_ms)
        if now - self._last_cleanup < idle_limit / 1000:
            return []
        self._last_cleanup = now
        removed = []
        for info in await self.client.xinfo_consumers(self.stream, self.group):
            name = as_text(info["name"])
            if name in (self.consumer, self.reclaimer) or int(info["pending"]):
                continue
            if int(info["idle"]) <= idle_limit:
                continue
            gone = await self._drop_if_idle(keys=[self.stream], args=[self.group, name])
            if int(gone) >= 0:
                removed.append(name)
                log.info(
                    "removed consumer %s from %s/%s (idle, nothing pending)",
                    name,
                    self.stream,
                    self.group,
                )
        return removed

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        await self.dead_letters.write(self.stream, self.group, entry, reason)
