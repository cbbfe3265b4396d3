"""Ingest's HTTP API: articles (JSON object, JSON array or NDJSON), rejections, feeds.

Every article in a request gets its own outcome — ``accepted``, ``duplicate`` or ``rejected``
with the reason — and a rejected one is also recorded on ``articles:rejected``, so nothing a
producer sent is lost even when its client ignores the response.  Limits are checked before
anything is stored (413 names the limit), and when Redis cannot take an article the answer is
503 listing what *was* stored: a producer that retries everything gets those back as
``duplicate``, never a silent gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, StrictBool
from redis.exceptions import RedisError

from services.common.http import require_api_key
from services.common.models import ArticleSubmission
from services.common.openapi import errors, request_body
from services.common.urls import InvalidURL
from services.ingest.feed_poller import FeedPoller, FeedRegistry
from services.ingest.pipeline import IngestPipeline, Input, Outcome, Via, dump_payload, rejected
from services.ingest.rejected import RejectedStore

#: ``topicwatch publish`` marks its requests so that articles read from files are counted
#: (and recorded in ``received_via``) as such; any other value means an ordinary API call.
VIA_HEADER = "X-Topicwatch-Via"

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)


def _unavailable(stored: list[Outcome] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": "storage unavailable: retry later"}
    if stored is not None:
        body["detail"] = (
            f"storage unavailable after {len(stored)} article(s): the rest were not stored, "
            "retry them (already stored ones will come back as duplicate)"
        )
        body["articles"] = [outcome.as_json() for outcome in stored]
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@dataclass(slots=True)
class _Item:
    """One article of a request: its decoded value, or why it could not be decoded."""

    raw: str
    size: int
    value: Any = None
    problem: Outcome | None = None


def _decode(data: bytes, what: str) -> _Item:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Item(
            raw=data.decode("utf-8", errors="replace"),
            size=len(data),
            problem=rejected(f"{what} is not valid UTF-8: {exc}", "(body)", "not valid UTF-8"),
        )
    try:
        return _Item(raw=text, size=len(data), value=json.loads(text))
    except RecursionError:
        problem = rejected(f"{what} is nested too deeply", "(body)", "nested too deeply")
    except ValueError as exc:
        problem = rejected(f"{what} is not valid JSON: {exc}", "(body)", "not valid JSON")
    return _Item(raw=text, size=len(data), problem=problem)


def _items(body: bytes, ndjson: bool) -> list[_Item]:
    if ndjson:
        lines = [line for line in body.split(b"\n") if line.strip()]
        return [_decode(line, f"line {number}") for number, line in enumerate(lines, start=1)]
    whole = _decode(body, "the request body")
    if whole.problem is not None or not isinstance(whole.value, list):
        return [whole]
    items = []
    for value in whole.value:
        raw = dump_payload(value)
        items.append(_Item(raw=raw, size=len(raw.encode("utf-8", errors="replace")), value=value))
    return items


#: What POST /v1/articles reads (the handler parses the body itself, so FastAPI cannot know).
_ARTICLE = {"$ref": "#/components/schemas/ArticleSubmission"}
ARTICLES_BODY = request_body(
    {
        "application/json": {"schema": {"anyOf": [_ARTICLE, {"type": "array", "items": _ARTICLE}]}},
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One article object per line."}
        },
    },
    [ArticleSubmission],
    required=True,
)

#: Largest part of a stream id (two unsigned 64-bit numbers).
MAX_STREAM_ID_PART = 2**64 - 1


def stream_id_problem(value: str, *, exclusive: bool = False) -> str | None:
    """Why ``value`` cannot be an entry id of the rejected stream (``exclusive``: a bound
    that excludes itself, as ``before``), or None.

    Checked here so that a client's bad parameter is answered with 422 naming it, not passed
    to Redis, whose error used to be reported as "storage unavailable" (503).
    """
    ms, _, seq = value.partition("-")
    if not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        return "must be a stream entry id, <milliseconds>-<sequence>, e.g. 1700000000000-0"
    if int(ms) > MAX_STREAM_ID_PART or int(seq) > MAX_STREAM_ID_PART:
        return f"each part of an entry id is at most {MAX_STREAM_ID_PART}"
    if exclusive and int(ms) == 0 and int(seq) == 0:
        return "nothing comes before 0-0: give an entry id from a listing"
    return None


def _entry_id(value: str) -> str:
    problem = stream_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


EntryId = Annotated[str, AfterValidator(_entry_id)]


def _in_batch(index: int, field: str) -> str:
    """``[2].published_at`` for a field of the third article; ``[2]`` for the article itself."""
    return f"[{index}]" if field == "(body)" else f"[{index}].{field}"


def build_router(pipeline: IngestPipeline) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["articles"])

    @router.post(
        "/articles",
        status_code=202,
        dependencies=[Depends(require_api_key)],
        openapi_extra=ARTICLES_BODY,
        responses=errors(413, 422, 503),
    )
    async def post_articles(request: Request) -> JSONResponse:
        """Accept one article object, a JSON array, or NDJSON (``application/x-ndjson``).

        202 with a per-article status (accepted | duplicate | rejected with reasons) when at
        least one was valid; 422 naming the fields when none was; 413 over the batch or
        per-article size limit (nothing stored); 503 when Redis could not store them.
        """
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        single = False
        if body.strip():
            items = _items(body, content_type in NDJSON_TYPES)
            single = content_type not in NDJSON_TYPES and not body.lstrip().startswith(b"[")
        else:
            items = []
        if not items:
            return JSONResponse(
                {
                    "detail": [{"field": "(body)", "message": "no articles in the request"}],
                    "articles": [],
                },
                status_code=422,
            )
        settings = pipeline.settings
        if len(items) > settings.ingest_max_batch:
            return JSONResponse(
                {
                    "detail": f"batch of {len(items)} articles is over the limit of "
                    f"{settings.ingest_max_batch} articles per request"
                },
                status_code=413,
            )
        for index, item in enumerate(items):
            if pipeline.oversized(item.size) is not None:
                where = "the article" if single else f"article [{index}]"
                return JSONResponse(
                    {
                        "detail": f"{where} is {item.size} bytes, over the limit of "
                        f"{settings.ingest_max_article_bytes} bytes per article"
                    },
                    status_code=413,
                )
        via: Via = "file" if request.headers.get(VIA_HEADER, "").lower() == "file" else "api"
        # Normalised together and recorded in one Redis round trip (as stream batches are).
        inputs = [Input(item.value, item.raw, None, item.problem) for item in items]
        try:
            recorded = await pipeline.submit_many(inputs, via)
        except RedisError:
            return _unavailable([])
        outcomes = [outcome for outcome in recorded if outcome is not None]
        if len(outcomes) < len(recorded):  # Redis refused some: report the stored prefix
            return _unavailable(outcomes[: recorded.index(None)])
        results = [outcome.as_json() for outcome in outcomes]
        if all(outcome.status == "rejected" for outcome in outcomes):
            detail = [
                {
                    "field": error.field if single else _in_batch(index, error.field),
                    "message": error.message,
                }
                for index, outcome in enumerate(outcomes)
                for error in outcome.errors
            ]
            return JSONResponse({"detail": detail, "articles": results}, status_code=422)
        return JSONResponse({"articles": results}, status_code=202)

    return router


class RetryRequest(BaseModel):
    ids: list[EntryId] = Field(default_factory=list, max_length=10_000)
    all: StrictBool = Field(default=False, description="Retry every rejection (the newest 1,000).")
    payloads: dict[EntryId, Any] = Field(
        default_factory=dict, description="Corrected payloads by rejection id, used instead."
    )


def build_rejected_router(store: RejectedStore, pipeline: IngestPipeline) -> APIRouter:
    router = APIRouter(prefix="/v1/rejected", tags=["rejected"])

    @router.get("", responses=errors(503))
    async def list_rejected(
        limit: int = Query(default=50, ge=1, le=1000),
        before: str | None = Query(
            default=None,
            pattern=r"^\d+-\d+$",
            description="Page back from this entry id (exclusive), from a previous listing.",
        ),
    ) -> JSONResponse:
        """Rejections, newest first, each with its reason, field errors and original payload."""
        problem = stream_id_problem(before, exclusive=True) if before is not None else None
        if problem is not None:
            return JSONResponse(
                {"detail": [{"field": "before", "message": problem}]}, status_code=422
            )
        try:
            entries = await store.list(limit=limit, before=before)
            total = await store.count()
        except RedisError:
            return _unavailable()
        return JSONResponse({"total": total, "rejected": [entry.as_json() for entry in entries]})

    @router.post("/retry", dependencies=[Depends(require_api_key)], responses=errors(503))
    async def retry_rejected(request: RetryRequest) -> JSONResponse:
        """Re-submit rejections (stored or corrected payloads); per-id outcome."""
        results: list[dict[str, Any]] = []
        try:
            ids = list(request.ids)
            if request.all:
                ids += [entry.entry_id for entry in await store.list(limit=1000)]
            for entry_id in dict.fromkeys(ids):
                replace = entry_id in request.payloads
                outcome = await store.retry(
                    pipeline, entry_id, payload=request.payloads.get(entry_id), replace=replace
                )
                if outcome is None:
                    results.append({"entry_id": entry_id, "status": "not_found"})
                else:
                    results.append({"entry_id": entry_id, **outcome.as_json()})
        except RedisError:
            return JSONResponse(
                {"detail": "storage unavailable: retry later", "results": results},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse({"results": results})

    return router


class FeedRequest(BaseModel):
    url: str = Field(min_length=1, max_length=4096)


def build_feeds_router(registry: FeedRegistry, poller: FeedPoller) -> APIRouter:
    router = APIRouter(prefix="/v1/feeds", tags=["feeds"])

    @router.get("", responses=errors(503))
    async def list_feeds() -> JSONResponse:
        """Every feed with its status: last success, last error, items seen, validators."""
        try:
            statuses = await registry.list()
        except RedisError:
            return _unavailable()
        poller.metrics.observe(statuses)
        return JSONResponse({"feeds": [status.model_dump(mode="json") for status in statuses]})

    @router.post(
        "",
        status_code=201,
        dependencies=[Depends(require_api_key)],
        responses={200: {"description": "Already registered"}, **errors(503)},
    )
    async def add_feed(request: FeedRequest) -> JSONResponse:
        """Register a feed (polled from now on); 200 if it was already registered."""
        try:
            status, created = await registry.add(await poller.check(request.url))
        except InvalidURL as exc:
            return JSONResponse(
                {"detail": [{"field": "url", "message": str(exc)}]}, status_code=422
            )
        except RedisError:
            return _unavailable()
        poller.wake.set()
        return JSONResponse(status.model_dump(mode="json"), status_code=201 if created else 200)

    @router.delete("", dependencies=[Depends(require_api_key)], responses=errors(404, 503))
    async def remove_feed(url: str = Query(min_length=1, max_length=4096)) -> JSONResponse:
        try:
            removed = await registry.remove(url)
        except RedisError:
            return _unavailable()
        if not removed:
            return JSONResponse({"detail": f"no feed {url}"}, status_code=404)
        return JSONResponse({"removed": url.strip()})

    @router.post("/poll", dependencies=[Depends(require_api_key)], responses=errors(503))
    async def poll_feeds() -> JSONResponse:
        """Poll every feed now (conditional GETs) and return their statuses."""
        try:
            async with poller.client() as client:
                statuses = await poller.poll_all(client)
        except RedisError:
            return _unavailable()
        return JSONResponse({"feeds": [status.model_dump(mode="json") for status in statuses]})

    return router
