"""The ingest service: HTTP API, feeds and the public ingest stream -> ``articles:accepted``."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.models import Article, Rejection
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_INGEST
from services.ingest.api import build_feeds_router, build_rejected_router, build_router
from services.ingest.feed_poller import FeedMetrics, FeedPoller, FeedRegistry
from services.ingest.handlers import IngestEntries, warm_up
from services.ingest.pipeline import REJECTED_MAXLEN, IngestMetrics, IngestPipeline
from services.ingest.rejected import RejectedStore

DESCRIPTION = (
    "Takes articles from the HTTP API, RSS/Atom feeds and direct publishers on the ingest "
    "stream, validates, normalises and de-duplicates them, and publishes each once to "
    "articles:accepted; what it cannot accept goes to articles:rejected with the reason."
)


def create_app(settings: Settings) -> FastAPI:
    """Wire the handlers (handlers.py), the API routes and the feed poller."""
    runtime = Runtime(
        settings, "ingest", description=DESCRIPTION, body_limit=settings.max_request_bytes
    )
    runtime.keep_window(
        runtime.names.rejected,
        settings.dead_letters_window_days,
        min(settings.dead_letters_window_max, REJECTED_MAXLEN),
    )
    pipeline = IngestPipeline(
        runtime.redis, runtime.names, settings, IngestMetrics(runtime.registry)
    )
    runtime.http.state.pipeline = pipeline

    runtime.consume(runtime.names.ingest, GROUP_INGEST, IngestEntries(pipeline))
    runtime.on_startup(warm_up)
    document_streams(runtime)

    feeds = FeedRegistry(
        runtime.redis,
        runtime.names,
        seen_days=settings.feed_seen_days,
        seen_max=settings.feed_seen_max,
    )
    poller = FeedPoller(feeds, pipeline, settings, FeedMetrics(runtime.registry))
    runtime.run_in_background("feeds", poller.run)

    runtime.http.include_router(build_router(pipeline))
    runtime.http.include_router(
        build_rejected_router(RejectedStore(runtime.redis, runtime.names), pipeline)
    )
    runtime.http.include_router(build_feeds_router(feeds, poller))
    return runtime.http


def document_streams(runtime: Runtime) -> None:
    """Describe ingest's streams in the FastStream app's AsyncAPI document.

    The entries themselves are written by one Lua script (accept-once) or a plain XADD, not
    by FastStream publishers; these publisher declarations exist so that the generated
    AsyncAPI document tells direct producers and downstream consumers the exact formats.
    """
    names = runtime.names
    for accepted in names.accepted_streams:
        runtime.broker.publisher(
            stream=accepted,
            title=accepted,
            description="Normalised, de-duplicated articles (one entry per distinct article"
            + (", in the partition its id picks)." if names.partitions > 1 else ")."),
            schema=Article,
        )
    runtime.broker.publisher(
        stream=names.rejected,
        title=names.rejected,
        description="Inputs ingest could not accept: reason, field errors, original payload.",
        schema=Rejection,
    )
