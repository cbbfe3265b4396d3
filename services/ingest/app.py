"""The ingest service: HTTP API and the public ingest stream -> ``articles:accepted``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastapi import FastAPI

from services.common.consumer import Entry
from services.common.models import FieldError
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_INGEST
from services.ingest.api import build_router
from services.ingest.pipeline import IngestMetrics, IngestPipeline, Outcome

DESCRIPTION = (
    "Takes articles from the HTTP API and from direct publishers on the ingest stream, "
    "validates, normalises and de-duplicates them, and publishes each once to articles:accepted."
)


def create_app(settings: Settings) -> FastAPI:
    runtime = Runtime(
        settings, "ingest", description=DESCRIPTION, body_limit=settings.max_request_bytes
    )
    pipeline = IngestPipeline(
        runtime.redis, runtime.names, settings, IngestMetrics(runtime.registry)
    )
    runtime.http.state.pipeline = pipeline

    async def handle_entries(entries: Sequence[Entry]) -> list[str]:
        """Each entry ends accepted, duplicate or on the rejected stream; then it may be acked."""
        done = []
        for entry in entries:
            await submit_entry(pipeline, entry)
            done.append(entry.id)
        return done

    runtime.consume(runtime.names.ingest, GROUP_INGEST, handle_entries)
    runtime.http.include_router(build_router(pipeline))
    return runtime.http


async def submit_entry(pipeline: IngestPipeline, entry: Entry) -> Outcome:
    """One direct publisher's entry: decode it leniently, reject with a reason if it is not JSON."""
    if entry.data is None:
        outcome = Outcome(
            status="rejected",
            reason="entry has no __data__ field",
            errors=[FieldError(field="__data__", message="missing")],
        )
        return await pipeline.reject(outcome, entry.text(), "stream", entry.id)
    try:
        payload = json.loads(entry.data)
    except (UnicodeDecodeError, ValueError) as exc:
        outcome = Outcome(
            status="rejected",
            reason=f"__data__ is not valid JSON: {exc}",
            errors=[FieldError(field="__data__", message="not valid UTF-8 JSON")],
        )
        return await pipeline.reject(outcome, entry.text(), "stream", entry.id)
    return await pipeline.submit(payload, "stream", raw=entry.text(), entry_id=entry.id)
