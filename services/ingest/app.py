"""The ingest service: HTTP API, feeds and the public ingest stream -> ``articles:accepted``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC

from fastapi import FastAPI
from redis.exceptions import RedisError

from services.common.consumer import Entry
from services.common.models import Article, ArticleSubmission, Rejection
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_INGEST
from services.ingest.api import build_feeds_router, build_rejected_router, build_router
from services.ingest.dates import DateParseError, parse_published_at
from services.ingest.feed_poller import FeedMetrics, FeedPoller, FeedRegistry
from services.ingest.normalize import normalize_submission
from services.ingest.pipeline import IngestMetrics, IngestPipeline, Outcome, rejected
from services.ingest.rejected import RejectedStore

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Takes articles from the HTTP API, RSS/Atom feeds and direct publishers on the ingest "
    "stream, validates, normalises and de-duplicates them, and publishes each once to "
    "articles:accepted; what it cannot accept goes to articles:rejected with the reason."
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
        """Each entry ends accepted, duplicate or on the rejected stream; then it may be acked.

        When Redis fails mid-batch, the entries handled so far are acked and the rest stay
        pending, to be re-claimed later: nothing is acked before its outcome is stored.
        """
        done = []
        for entry in entries:
            try:
                await submit_entry(pipeline, entry)
            except RedisError as exc:
                log.warning("ingest stream: Redis failed at %s, will retry: %s", entry.id, exc)
                break
            done.append(entry.id)
        return done

    runtime.consume(runtime.names.ingest, GROUP_INGEST, handle_entries)
    runtime.on_startup(warm_up)
    document_streams(runtime)

    feeds = FeedRegistry(runtime.redis, runtime.names)
    poller = FeedPoller(feeds, pipeline, settings, FeedMetrics(runtime.registry))
    runtime.run_in_background("feeds", poller.run)

    runtime.http.include_router(build_router(pipeline))
    runtime.http.include_router(
        build_rejected_router(RejectedStore(runtime.redis, runtime.names), pipeline)
    )
    runtime.http.include_router(build_feeds_router(feeds, poller))
    return runtime.http


async def warm_up() -> None:
    """Normalise one sample before taking traffic.

    The language model, date parsers and HTML extractor load lazily; without this the first
    article after a start waited about half a second for them, against a promise of an
    alert within a second.
    """
    sample = ArticleSubmission(
        title="Warm-up",
        body="MOSCOW (Agency) - A sentence in English, published 16:02 27.11.2019.",
        published_at="16:02 27.11.2019",
        # A page too (its title and metadata are read even beside a body), so that the HTML
        # extractor is loaded here rather than by the first page a producer sends.
        html="<html><head><title>Warm-up</title></head><body><p>A sentence.</p></body></html>",
    )
    await asyncio.to_thread(normalize_submission, sample, received_via="api")
    # A date no parser reads makes dateparser try every language it has, loading them all
    # (0.8 s the first time); the first odd date a producer sends should not pay for that.
    with contextlib.suppress(DateParseError):
        await asyncio.to_thread(parse_published_at, "0", default_tz=UTC)


def document_streams(runtime: Runtime) -> None:
    """Describe ingest's streams in the FastStream app's AsyncAPI document.

    The entries themselves are written by one Lua script (accept-once) or a plain XADD, not
    by FastStream publishers; these publisher declarations exist so that the generated
    AsyncAPI document tells direct producers and downstream consumers the exact formats.
    """
    names = runtime.names
    runtime.broker.publisher(
        stream=names.accepted,
        title=names.accepted,
        description="Normalised, de-duplicated articles (one entry per distinct article).",
        schema=Article,
    )
    runtime.broker.publisher(
        stream=names.rejected,
        title=names.rejected,
        description="Inputs ingest could not accept: reason, field errors, original payload.",
        schema=Rejection,
    )


async def submit_entry(pipeline: IngestPipeline, entry: Entry) -> Outcome:
    """One direct publisher's entry: decode it leniently, reject with a reason if it is not JSON."""
    if entry.data is None:
        outcome = rejected("entry has no __data__ field", "__data__", "missing")
        return await pipeline.reject(outcome, entry.text(), "stream", entry.id)
    oversized = pipeline.oversized(len(entry.data))
    if oversized is not None:
        return await pipeline.reject(oversized, entry.text(), "stream", entry.id)
    try:
        text = entry.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        outcome = rejected(f"__data__ is not valid UTF-8: {exc}", "__data__", "not valid UTF-8")
        return await pipeline.reject(outcome, entry.text(), "stream", entry.id)
    try:
        payload = json.loads(text)
    except RecursionError:
        outcome = rejected("__data__ is nested too deeply", "__data__", "nested too deeply")
        return await pipeline.reject(outcome, text, "stream", entry.id)
    except ValueError as exc:
        outcome = rejected(f"__data__ is not valid JSON: {exc}", "__data__", "not valid JSON")
        return await pipeline.reject(outcome, text, "stream", entry.id)
    return await pipeline.submit(payload, "stream", raw=text, entry_id=entry.id)
