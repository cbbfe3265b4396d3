"""Ingest's one path for every input: validate -> normalise -> accept once, or reject with reasons.

The HTTP API, the stream consumer, feeds and files all call :meth:`IngestPipeline.submit`, so
an article is treated the same however it arrives.  Every call ends in exactly one of
``accepted``, ``duplicate`` or ``rejected`` (the rejection written to ``articles:rejected`` with
the original payload), or raises ``RedisError`` when Redis could not record the outcome — the
caller must then not report success (503 for the API; the stream entry stays pending).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from redis.exceptions import NoScriptError, RedisError

from services.common.models import Article, ArticleSubmission, FieldError, Rejection
from services.common.settings import Settings
from services.common.streams import StreamNames, encode
from services.common.submission import (
    SubmissionError,
    merge_errors,
    validate_submission,
    without_bad_fields,
)
from services.ingest.dedup import AcceptOnce
from services.ingest.normalize import (
    NormalizationError,
    normalize_submission,
    normalize_submissions,
)

log = logging.getLogger(__name__)

Via = Literal["api", "stream", "feed", "file"]
Status = Literal["accepted", "duplicate", "rejected"]

#: Label values of ingest's counters (fixed sets, as Prometheus wants).
VIAS: tuple[Via, ...] = ("api", "stream", "feed", "file")
STATUSES: tuple[Status, ...] = ("accepted", "duplicate", "rejected")

#: A rejection keeps at most this much of an oversized payload (the rest is counted, not kept).
MAX_KEPT_PAYLOAD = 64 * 1024
#: The rejected stream is capped (approximately) so hostile input cannot fill Redis.
REJECTED_MAXLEN = 100_000


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


@dataclass(slots=True)
class Input:
    """One input of a batch: its decoded payload, or the rejection decided before decoding."""

    payload: Any
    raw: str
    """The payload as received (kept in a rejection)."""
    entry_id: str | None = None
    outcome: Outcome | None = None
    """Set when the input was refused before it could be validated (not JSON, say)."""


def rejected(reason: str, field_name: str, message: str) -> Outcome:
    return Outcome(
        status="rejected", reason=reason, errors=[FieldError(field=field_name, message=message)]
    )


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


def dump_payload(payload: Any, fallback: str = "") -> str:
    """The payload as JSON for a rejection record; never raises (deeply nested input included)."""
    try:
        return json.dumps(payload, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return fallback or f"<unserialisable {type(payload).__name__}>"


_SURROGATES = re.compile("[\ud800-\udfff]")


def scrub(value: Any) -> Any:
    """``value`` with lone surrogates in every string replaced by U+FFFD.

    JSON may spell them (``"\\udcff"``) though they are not Unicode text: left in, they make
    every later UTF-8 encoding — the stored event, the rejection record — fail.
    """
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    return value


def keep_payload(raw: str) -> str:
    """What a rejection stores of the original payload: all of it, unless it is huge."""
    raw = _SURROGATES.sub("\ufffd", raw)
    if len(raw) <= MAX_KEPT_PAYLOAD:
        return raw
    return raw[:MAX_KEPT_PAYLOAD] + f"\n...[truncated: {len(raw)} characters in all]"


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
        self.accept_once = AcceptOnce(
            client, names, ttl_seconds=int(settings.dedup_window_days * 86_400)
        )

    def validate(self, payload: Any) -> ArticleSubmission | Outcome:
        """Parse one decoded JSON value; a rejection Outcome names the bad fields."""
        if not isinstance(payload, dict):
            return rejected(
                f"an article must be a JSON object, not {_json_type(payload)}",
                "(body)",
                "expected a JSON object",
            )
        try:
            return validate_submission(scrub(payload))
        except SubmissionError as exc:
            return _invalid(exc.errors)
        except RecursionError:
            return rejected("invalid article: nested too deeply", "(body)", "nested too deeply")

    def oversized(self, size: int) -> Outcome | None:
        """A rejection when one article's encoded size is over the per-article limit."""
        limit = self.settings.ingest_max_article_bytes
        if size <= limit:
            return None
        return rejected(
            f"article is {size} bytes, over the limit of {limit} bytes per article",
            "(body)",
            f"larger than {limit} bytes",
        )

    async def submit(
        self, payload: Any, via: Via, *, raw: str | None = None, entry_id: str | None = None
    ) -> Outcome:
        """Validate, normalise and publish one decoded input (see the module docstring)."""
        checked = self.validate(payload)
        if isinstance(checked, Outcome):
            checked = await self._every_problem(payload, checked)
            dumped = raw if raw is not None else dump_payload(payload)
            return await self.reject(checked, dumped, via, entry_id)
        return await self.submit_valid(checked, via, raw=raw, entry_id=entry_id)

    async def _every_problem(self, payload: Any, outcome: Outcome) -> Outcome:
        """``outcome`` plus what normalising the rest of the article finds wrong with it.

        A producer should be able to fix everything in one round trip: a bad ``title`` must
        not hide an unreadable ``published_at``.  So the fields that failed validation are
        left out and the rest is normalised (as it would be if accepted) for its problems.
        """
        if not isinstance(payload, dict) or not outcome.errors:
            return outcome
        try:
            rest = without_bad_fields(scrub(payload), outcome.errors)
            if rest.html:
                await asyncio.to_thread(normalize_submission, rest)
            else:
                normalize_submission(rest)
        except NormalizationError as exc:
            return _invalid(merge_errors(outcome.errors, exc.errors))
        except (ValidationError, RecursionError):
            return outcome
        except Exception:  # a bug here must not lose the rejection it was adding to
            log.exception("checking a rejected article further failed")
        return outcome

    async def submit_valid(
        self,
        submission: ArticleSubmission,
        via: Via,
        *,
        raw: str | None = None,
        entry_id: str | None = None,
    ) -> Outcome:
        try:
            if submission.html:
                # HTML extraction is CPU work of tens of milliseconds: keep the loop responsive.
                article = await asyncio.to_thread(
                    normalize_submission, submission, received_via=via
                )
            else:
                article = normalize_submission(submission, received_via=via)
        except NormalizationError as exc:
            outcome = Outcome(
                status="rejected", reason=f"invalid article: {exc.reason}", errors=exc.errors
            )
            return await self.reject(outcome, raw or _submission_json(submission), via, entry_id)
        except Exception as exc:  # a bug must not lose the article: reject it with the reason
            log.exception("normalising an article failed")
            outcome = _internal_error(exc)
            return await self.reject(outcome, raw or _submission_json(submission), via, entry_id)
        result = await self.accept_once.publish(article)
        status: Status = "accepted" if result.accepted else "duplicate"
        self.metrics.articles_total.labels(via, status).inc()
        return Outcome(status=status, id=article.id, duplicate_of=result.article_id)

    async def submit_many(self, inputs: Sequence[Input], via: Via) -> list[Outcome | None]:
        """``submit`` for a batch: the same outcomes, for less CPU and one Redis round trip.

        The articles are normalised together (one language-detection run, in a worker thread
        so the event loop stays responsive), then every accept-once script and rejection goes
        to Redis in one pipeline. Each input's outcome is returned in order, or ``None`` when
        Redis refused to record that one (it must not be acknowledged; it is retried alone).
        Raises ``RedisError`` when the round trip itself failed: nothing may be acknowledged
        then (a retry finds what was published meanwhile a duplicate: never published twice).
        """
        outcomes: list[Outcome | None] = [None] * len(inputs)
        rejections: list[tuple[int, Outcome, str]] = []
        valid: list[tuple[int, ArticleSubmission]] = []
        for i, item in enumerate(inputs):
            if item.outcome is not None:
                rejections.append((i, item.outcome, item.raw))
                continue
            checked = self.validate(item.payload)
            if isinstance(checked, Outcome):
                rejections.append((i, await self._every_problem(item.payload, checked), item.raw))
            else:
                valid.append((i, checked))
        normalised = await asyncio.to_thread(
            normalize_submissions, [submission for _, submission in valid], received_via=via
        )
        articles: list[tuple[int, Article]] = []
        for (i, submission), result in zip(valid, normalised, strict=True):
            if isinstance(result, Article):
                articles.append((i, result))
                continue
            raw = inputs[i].raw or _submission_json(submission)
            if isinstance(result, NormalizationError):
                outcome = Outcome(
                    status="rejected",
                    reason=f"invalid article: {result.reason}",
                    errors=result.errors,
                )
            else:  # a bug must not lose the article: reject it with the reason
                log.error("normalising an article failed", exc_info=result)
                outcome = _internal_error(result)
            rejections.append((i, outcome, raw))

        pipe = self.client.pipeline(transaction=False)
        for i, outcome, raw in rejections:
            self._queue_rejection(pipe, outcome, raw, via, inputs[i].entry_id)
        for _, article in articles:
            self.accept_once.queue(pipe, article)
        replies = await pipe.execute(raise_on_error=False)

        for (i, outcome, _), reply in zip(rejections, replies, strict=False):
            if isinstance(reply, Exception):
                log.warning("ingest: Redis refused a rejection record, will retry: %s", reply)
                continue
            self.metrics.articles_total.labels(via, "rejected").inc()
            outcomes[i] = outcome
        for (i, article), reply in zip(articles, replies[len(rejections) :], strict=True):
            try:
                if isinstance(reply, NoScriptError):  # the server lost its script cache
                    dedup = await self.accept_once.publish(article)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    dedup = AcceptOnce.result(article, reply)
            except RedisError as exc:
                log.warning("ingest: Redis refused article %s, will retry: %s", article.id, exc)
                continue
            status: Status = "accepted" if dedup.accepted else "duplicate"
            self.metrics.articles_total.labels(via, status).inc()
            outcomes[i] = Outcome(status=status, id=article.id, duplicate_of=dedup.article_id)
        return outcomes

    async def reject(
        self, outcome: Outcome, raw: str, via: Via, entry_id: str | None = None
    ) -> Outcome:
        """Record a rejection (with the original payload) where `topicwatch rejected` lists it."""
        await self._queue_rejection(self.client, outcome, raw, via, entry_id)
        self.metrics.articles_total.labels(via, "rejected").inc()
        return outcome

    def _queue_rejection(
        self, client: Any, outcome: Outcome, raw: str, via: Via, entry_id: str | None
    ) -> Any:
        """XADD the rejection record on ``client`` (a connection: awaitable; a pipeline: queued)."""
        rejection = Rejection(
            reason=outcome.reason or "rejected",
            errors=outcome.errors,
            payload=keep_payload(raw),
            received_via=via,
            source_entry_id=entry_id,
        )
        return client.xadd(
            self.names.rejected,
            encode(rejection),
            maxlen=REJECTED_MAXLEN,
            approximate=True,
        )


def _internal_error(exc: BaseException) -> Outcome:
    return rejected(
        f"could not be normalised (internal error: {type(exc).__name__}); "
        "retry with `topicwatch rejected retry` once fixed",
        "(article)",
        "internal error",
    )


def _invalid(errors: list[FieldError]) -> Outcome:
    return Outcome(status="rejected", reason="invalid article: " + _summary(errors), errors=errors)


def _submission_json(submission: ArticleSubmission) -> str:
    return submission.model_dump_json(exclude_none=True)


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors[:5]) + (
        f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    )
