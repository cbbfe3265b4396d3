"""Stream names and the wire format of their entries.

Every entry has one field, ``__data__``, holding plain JSON: FastStream consumers parse it
as the message body, and producers outside topicwatch can write it with a bare ``XADD``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

DATA_FIELD = "__data__"


@dataclass(frozen=True, slots=True)
class StreamNames:
    """The stream topology, under one configurable prefix."""

    prefix: str = "topicwatch"

    @property
    def ingest(self) -> str:
        """Public entry point: anyone may XADD an article submission here."""
        return f"{self.prefix}:articles:ingest"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}:articles:rejected"

    @property
    def accepted(self) -> str:
        return f"{self.prefix}:articles:accepted"

    @property
    def classified(self) -> str:
        return f"{self.prefix}:articles:classified"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def alerts_dead(self) -> str:
        """Alerts whose delivery failed for good, with every attempt's outcome."""
        return f"{self.prefix}:alerts:dead"

    @property
    def dead_letters(self) -> str:
        """Stream entries a service failed to process ``max_deliveries`` times."""
        return f"{self.prefix}:dead-letters"

    @property
    def taxonomy(self) -> str:
        """Key where classify announces the taxonomy in use: JSON {version, topics: [ids]}."""
        return f"{self.prefix}:taxonomy"

    def key(self, *parts: str) -> str:
        """A non-stream key under the same prefix (dedup sets, subscriptions, ...)."""
        return ":".join((self.prefix, *parts))


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
