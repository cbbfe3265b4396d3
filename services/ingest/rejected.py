"""The rejected stream as a work list: list what was refused, re-submit it after a fix.

A rejection is not the end of an article: the producer may fix the payload, or topicwatch may
learn a date format it did not know.  ``retry`` runs the stored payload (or a corrected one)
through the same pipeline again and removes the old rejection only after the new outcome is
recorded — so an article is never in neither place.  If it is refused again, the new rejection
(with the new reason) replaces the old one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from services.common.models import Rejection
from services.common.streams import DATA_FIELD, StreamNames, as_text
from services.ingest.pipeline import IngestPipeline, Outcome, rejected

#: Most rejections one listing returns.
MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class RejectedEntry:
    entry_id: str
    rejection: Rejection | None
    raw: str
    """The entry's ``__data__`` as stored (for entries that do not parse as a Rejection)."""

    def as_json(self) -> dict[str, Any]:
        if self.rejection is None:
            return {"entry_id": self.entry_id, "unreadable": self.raw[:2000]}
        return {"entry_id": self.entry_id, **self.rejection.model_dump(mode="json")}


def _parse(entry_id: Any, fields: Any) -> RejectedEntry:
    fields = fields or {}
    raw = as_text(fields.get(DATA_FIELD.encode(), fields.get(DATA_FIELD, b"")))
    try:
        rejection: Rejection | None = Rejection.model_validate_json(raw)
    except ValidationError:
        rejection = None
    return RejectedEntry(entry_id=as_text(entry_id), rejection=rejection, raw=raw)


class RejectedStore:
    def __init__(self, client: aioredis.Redis, names: StreamNames) -> None:
        self.client = client
        self.names = names

    async def count(self) -> int:
        return int(await self.client.xlen(self.names.rejected))

    async def list(self, *, limit: int = 50, before: str | None = None) -> list[RejectedEntry]:
        """Newest first; ``before`` pages back from an entry id (exclusive)."""
        limit = max(1, min(limit, MAX_LIST))
        top = f"({before}" if before else "+"
        entries = await self.client.xrevrange(self.names.rejected, top, "-", count=limit)
        return [_parse(entry_id, fields) for entry_id, fields in entries or []]

    async def get(self, entry_id: str) -> RejectedEntry | None:
        entries = await self.client.xrange(self.names.rejected, entry_id, entry_id, count=1)
        if not entries:
            return None
        found_id, fields = entries[0]
        return _parse(found_id, fields)

    async def retry(
        self,
        pipeline: IngestPipeline,
        entry_id: str,
        *,
        payload: Any = None,
        replace: bool = False,
    ) -> Outcome | None:
        """Re-submit one rejection (its stored payload, or ``payload`` when ``replace``).

        Returns the new outcome, or ``None`` when no such rejection exists.  Raises
        ``RedisError`` like the pipeline (the old rejection is then kept).
        """
        entry = await self.get(entry_id)
        if entry is None:
            return None
        via = entry.rejection.received_via if entry.rejection else "stream"
        if replace:
            raw = json.dumps(payload, ensure_ascii=False)
            outcome = await pipeline.submit(payload, via, raw=raw)
        else:
            raw = entry.rejection.payload if entry.rejection else entry.raw
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                outcome = await pipeline.reject(
                    rejected(
                        f"stored payload is not valid JSON ({exc}); retry with a corrected payload",
                        "payload",
                        "not valid JSON",
                    ),
                    raw,
                    via,
                )
            else:
                outcome = await pipeline.submit(value, via, raw=raw)
        await self.client.xdel(self.names.rejected, entry_id)
        return outcome
