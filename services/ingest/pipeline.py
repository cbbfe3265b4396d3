"""Ingest's one path for every input: validate -> normalise -> accept once, or reject with reasons.

The HTTP API, the stream consumer, feeds and files all call :meth:`IngestPipeline.submit`, so
an article is treated the same however it arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from services.common.models import ArticleSubmission, FieldError, Rejection, field_errors
from services.common.settings import Settings
from services.common.streams import StreamNames, encode
from services.ingest.dedup import AcceptOnce
from services.ingest.normalize import NormalizationError, normalize_submission

Via = Literal["api", "stream", "feed", "file"]
Status = Literal["accepted", "duplicate", "rejected"]

#: Label values of ingest's counters (fixed sets, as Prometheus wants).
VIAS: tuple[Via, ...] = ("api", "stream", "feed", "file")
STATUSES: tuple[Status, ...] = ("accepted", "duplicate", "rejected")


@dataclass(slots=True)
class Outcome:
    """What became of one input."""

    status: Status
    id: str | None = None
    reason: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    duplicate_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.duplicate_of and self.duplicate_of != self.id:
            out["duplicate_of"] = self.duplicate_of
        if self.reason:
            out["reason"] = self.reason
        if self.errors:
            out["errors"] = [e.model_dump() for e in self.errors]
        return out


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.articles_total = Counter(
            "topicwatch_ingest_articles_total",
            "Inputs seen by ingest, by how they arrived and what became of them.",
            ["via", "status"],
            registry=registry,
        )
        for via in VIAS:
            for status in STATUSES:
                self.articles_total.labels(via, status)


class IngestPipeline:
    def __init__(
        self,
        client: aioredis.Redis,
        names: StreamNames,
        settings: Settings,
        metrics: IngestMetrics,
    ) -> None:
        self.client = client
        self.names = names
        self.settings = settings
        self.metrics = metrics
        self.accept_once = AcceptOnce(client, names)

    def validate(self, payload: Any) -> ArticleSubmission | Outcome:
        """Parse one decoded JSON value; a rejection Outcome names the bad fields."""
        if not isinstance(payload, dict):
            return Outcome(
                status="rejected",
                reason=f"an article must be a JSON object, not {type(payload).__name__}",
                errors=[FieldError(field="(body)", message="expected a JSON object")],
            )
        try:
            return ArticleSubmission.model_validate(payload)
        except ValidationError as exc:
            errors = field_errors(exc)
            return Outcome(
                status="rejected", reason="invalid article: " + _summary(errors), errors=errors
            )

    async def submit(
        self, payload: Any, via: Via, *, raw: str | None = None, entry_id: str | None = None
    ) -> Outcome:
        """Validate, normalise and publish one input; rejections are recorded on the stream.

        Raises only when Redis cannot take the result: the caller must then not report
        success (503 for the API, leave the entry pending for the stream).
        """
        checked = self.validate(payload)
        if isinstance(checked, Outcome):
            dumped = raw if raw is not None else _dump(payload)
            return await self.reject(checked, dumped, via, entry_id)
        return await self.submit_valid(checked, via, raw=raw, entry_id=entry_id)

    async def submit_valid(
        self,
        submission: ArticleSubmission,
        via: Via,
        *,
        raw: str | None = None,
        entry_id: str | None = None,
    ) -> Outcome:
        try:
            article = normalize_submission(submission, received_via=via)
        except NormalizationError as exc:
            errors = [FieldError(field=exc.field, message=exc.message)]
            outcome = Outcome(status="rejected", reason=f"invalid article: {exc}", errors=errors)
            dumped = raw if raw is not None else submission.model_dump_json(exclude_none=True)
            return await self.reject(outcome, dumped, via, entry_id)
        result = await self.accept_once.publish(article)
        status: Status = "accepted" if result.accepted else "duplicate"
        self.metrics.articles_total.labels(via, status).inc()
        return Outcome(status=status, id=article.id, duplicate_of=result.article_id)

    async def reject(
        self, outcome: Outcome, raw: str, via: Via, entry_id: str | None = None
    ) -> Outcome:
        """Record a rejection (with the original payload) where `topicwatch rejected` lists it."""
        rejection = Rejection(
            reason=outcome.reason or "rejected",
            errors=outcome.errors,
            payload=raw,
            received_via=via,
            source_entry_id=entry_id,
        )
        await self.client.xadd(self.names.rejected, encode(rejection))
        self.metrics.articles_total.labels(via, "rejected").inc()
        return outcome


def _dump(payload: Any) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(payload)


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors[:5]) + (
        f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    )
