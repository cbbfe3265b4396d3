"""Ingest's HTTP API: ``POST /v1/articles`` (one article or a JSON array)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from services.common.http import require_api_key
from services.ingest.pipeline import IngestPipeline, Outcome


def build_router(pipeline: IngestPipeline) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["articles"])

    @router.post("/articles", status_code=202, dependencies=[Depends(require_api_key)])
    async def post_articles(request: Request) -> JSONResponse:
        """Accept one article object or an array of them.

        202 with a per-article status (accepted | duplicate | rejected with reasons) when at
        least one was valid; 422 naming the fields when nothing was; 503 when Redis could not
        store them (never 202 for an article that was not stored).
        """
        body = await request.body()
        try:
            payload: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            return JSONResponse(
                {"detail": [{"field": "(body)", "message": f"not valid JSON: {exc}"}]},
                status_code=422,
            )
        single = not isinstance(payload, list)
        items = [payload] if single else payload
        if not items:
            return JSONResponse(
                {"detail": [{"field": "(body)", "message": "empty array"}]}, status_code=422
            )
        settings = pipeline.settings
        if len(items) > settings.ingest_max_batch:
            return JSONResponse(
                {"detail": f"batch of {len(items)} articles is over the limit of "
                 f"{settings.ingest_max_batch}"},
                status_code=413,
            )
        outcomes: list[Outcome] = []
        try:
            for index, item in enumerate(items):
                outcome = pipeline.validate(item)
                if isinstance(outcome, Outcome):
                    if not single:
                        for err in outcome.errors:
                            err.field = f"[{index}].{err.field}"
                    outcomes.append(await pipeline.reject(outcome, json.dumps(item), "api"))
                else:
                    outcomes.append(await pipeline.submit_valid(outcome, "api"))
        except RedisError:
            return JSONResponse(
                {"detail": "storage unavailable: articles were not stored, retry later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if all(o.status == "rejected" for o in outcomes):
            detail = [e.model_dump() for o in outcomes for e in o.errors]
            return JSONResponse({"detail": detail}, status_code=422)
        return JSONResponse({"articles": [o.as_json() for o in outcomes]}, status_code=202)

    return router
