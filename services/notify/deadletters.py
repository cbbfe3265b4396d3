"""Dead-lettered alerts: listing them, and queuing them again after a fix.

The delivery worker (``delivery.py``) writes a dead letter (``alerts:dead``) for an alert that
failed for good, with every attempt's outcome.  Replay is a separate, operator-driven act:
``POST /v1/alerts/{id}/redeliver`` and ``topicwatch dead-letters replay`` queue the alert
again with a fresh retry budget, unless its subscription has nowhere to send it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.common.models import Alert
from services.common.streams import DATA_FIELD, StreamNames, as_text
from services.notify.alerts import ALERT_TTL_SECONDS, queue_member
from services.notify.delivery import DeliveryWorker, destination_of
from services.notify.subscriptions import Subscription


class NotRedeliverable(Exception):
    """The alert exists but its subscription has nowhere to deliver it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def undeliverable_reason(subscription: Subscription | None) -> str | None:
    """Why alerts of this subscription cannot be sent now, or None when they can."""
    if subscription is None:
        return "its subscription was deleted"
    if subscription.disabled:
        return (
            f"its subscription is disabled ({subscription.disabled_reason or 'by its owner'});"
            ' fix the endpoint, then PATCH {"disabled": false} first'
        )
    if destination_of(subscription) is None:
        return "its subscription has no webhook or e-mail (history and live stream only)"
    return None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    entry_id: str
    data: dict[str, Any]

    @property
    def alert(self) -> Alert:
        return Alert.model_validate(self.data["alert"])


async def list_dead_letters(
    client: aioredis.Redis, names: StreamNames, *, count: int = 100, start: str = "-"
) -> list[DeadLetterRecord]:
    """Dead-lettered alerts, oldest first (merged over every subscription shard's stream)."""
    entries = []
    for stream in names.alerts_dead_streams:
        entries += await client.xrange(stream, start, "+", count=count) or []
    if len(names.alerts_dead_streams) > 1:
        entries = sorted(entries, key=lambda entry: _entry_order(entry[0]))[:count]
    out = []
    for entry_id, fields in entries:
        fields = fields or {}
        raw = fields.get(DATA_FIELD.encode()) or fields.get(DATA_FIELD)
        if raw:
            out.append(DeadLetterRecord(as_text(entry_id), json.loads(raw)))
    return out


async def replay_dead_letters(
    worker: DeliveryWorker,
    records: Sequence[DeadLetterRecord],
    refused: dict[str, str] | None = None,
) -> list[str]:
    """Queue the dead-lettered alerts again; returns the alert ids queued. Alerts whose
    subscription has nowhere to send them stay dead, with the reason in ``refused``."""
    queued = []
    for record in records:
        alert = record.alert
        try:
            requeued = await redeliver(worker, alert.id, restore=alert)
        except NotRedeliverable as exc:
            if refused is not None:
                refused[alert.id] = exc.reason
            continue
        if requeued:
            # The entry may predate the dead-entry pointer (or it was overwritten): drop it too.
            dead = worker.keys.alerts_dead_for(alert.subscription_id)
            await worker.client.xdel(dead, record.entry_id)
            queued.append(alert.id)
    return queued


async def redeliver(worker: DeliveryWorker, alert_id: str, *, restore: Alert | None = None) -> bool:
    """Queue an existing alert again (after a fix), with a fresh retry budget.

    ``restore`` re-creates the alert record from a dead letter when it has expired.
    Its dead-letter entry, if any, is removed: it is no longer dead. False when there is
    no such alert; :class:`NotRedeliverable` when its subscription has nowhere to send it
    (queuing it would only dead-letter it again, without its attempt log).
    """
    alert = await worker.alert(alert_id, restore.subscription_id if restore else None)
    expired = alert is None
    alert = alert or restore
    if alert is None:
        return False
    sid = alert.subscription_id
    why = undeliverable_reason(await worker.store.get(sid))
    if why:
        raise NotRedeliverable(why)
    if expired:
        await worker.client.set(
            worker.keys.alert(alert_id, sid),
            alert.model_dump_json(),
            ex=ALERT_TTL_SECONDS,
            nx=True,
        )
    now = worker.now()
    keys = worker.keys
    dead_entry = await worker.client.get(keys.dead_entry(alert_id, sid))
    async with worker.client.pipeline(transaction=True) as pipe:  # one slot: sid's shard
        pipe.delete(keys.attempts(alert_id, sid), keys.dead_entry(alert_id, sid))
        if dead_entry:
            pipe.xdel(keys.alerts_dead_for(sid), as_text(dead_entry))
        pipe.rpush(keys.queue(sid), queue_member(alert_id, now))
        pipe.zadd(keys.due_for(sid), {sid: now}, nx=True)
        await pipe.execute()
    worker.wake()
    return True


def _entry_order(entry_id: object) -> tuple[int, int]:
    ms, _, seq = as_text(entry_id).partition("-")
    return int(ms or 0), int(seq or 0)
