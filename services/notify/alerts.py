"""Create an alert exactly once and queue its delivery, in one atomic step.

The alert id is a hash of (subscription id, article id), and creation is ``SET NX`` on the
alert's key together with every write that follows from it — the ``alerts`` stream entry, the
subscription's history stream, and the subscription's delivery queue — in one Lua script.
Redelivered stream entries, an article published twice, or a crash between steps can
therefore never produce a second alert or an alert that is recorded but never delivered.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from services.common.models import Alert
from services.common.streams import DATA_FIELD, StreamNames

#: How long an alert id is remembered (and its record kept) for exactly-once.
ALERT_TTL_SECONDS = 90 * 24 * 3600

_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[6]) then return 0 end
redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[1])
redis.call('XADD', KEYS[5], '*', ARGV[3], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], 'NX', ARGV[2], ARGV[4])
return 1
"""


class AlertKeys:
    """Key names of notify's delivery state, under the stream prefix."""

    def __init__(self, names: StreamNames) -> None:
        self.names = names
        self.due = names.key("delivery", "due")

    def alert(self, alert_id: str) -> str:
        return self.names.key("alert", alert_id)

    def attempts(self, alert_id: str) -> str:
        return self.names.key("alert", alert_id, "attempts")

    def queue(self, subscription_id: str) -> str:
        return self.names.key("queue", subscription_id)

    def history(self, subscription_id: str) -> str:
        """The subscription's own alert stream: history and the source of its live stream."""
        return self.names.key("subscription", subscription_id, "alerts")


class AlertWriter:
    def __init__(self, client: aioredis.Redis, names: StreamNames) -> None:
        self.client = client
        self.names = names
        self.keys = AlertKeys(names)
        self._create = client.register_script(_CREATE)

    async def create(self, alert: Alert, *, now: float | None = None) -> bool:
        """Record and queue ``alert``; False when it already existed (nothing is written)."""
        sid = alert.subscription_id
        created = await self._create(
            keys=[
                self.keys.alert(alert.id),
                self.names.alerts,
                self.keys.queue(sid),
                self.keys.due,
                self.keys.history(sid),
            ],
            args=[
                alert.model_dump_json(),
                time.time() if now is None else now,
                DATA_FIELD,
                sid,
                alert.id,
                ALERT_TTL_SECONDS,
            ],
        )
        return bool(created)

    async def get(self, alert_id: str) -> Alert | None:
        raw = await self.client.get(self.keys.alert(alert_id))
        return Alert.model_validate_json(raw) if raw else None
