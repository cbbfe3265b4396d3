"""The classify service: ``articles:accepted`` -> topics -> ``articles:classified``.

Also answers ``GET /v1/topics`` (the loaded taxonomy) and ``POST /v1/classify`` (a dry run of
one article, nothing published). The taxonomy is reloaded when its file changes and on
SIGHUP; an invalid new file is refused and the running taxonomy stays in use.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.classify.api import build_router
from services.classify.handlers import ClassifyEntries, ClassifyMetrics, TaxonomyAnnouncer
from services.classify.reload import ClassifierHolder
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_CLASSIFY

DESCRIPTION = "Tags accepted articles with topics (scores, evidence, entities)."


def create_app(settings: Settings) -> FastAPI:
    """Wire the handlers (handlers.py) to the stream, the background loops and the routes."""
    runtime = Runtime(settings, "classify", description=DESCRIPTION)
    holder = ClassifierHolder(
        settings.taxonomy_path,
        registry=runtime.registry,
        interval=settings.taxonomy_reload_interval,
    )
    runtime.http.state.classifier = holder
    metrics = ClassifyMetrics(runtime.registry)
    metrics.known_topics(holder.topic_ids)
    for partition in settings.own_partitions:
        handle_entries = ClassifyEntries(
            redis=runtime.redis,
            names=runtime.names,
            holder=holder,
            dead_letters=runtime.dead_letters,
            metrics=metrics,
            partition=partition,
        )
        runtime.consume(handle_entries.source, GROUP_CLASSIFY, handle_entries)
    runtime.run_in_background("taxonomy-reload", holder.watch)
    announcer = TaxonomyAnnouncer(
        redis=runtime.redis, names=runtime.names, holder=holder, metrics=metrics
    )
    runtime.run_in_background("taxonomy-announce", announcer.run)
    runtime.http.include_router(build_router(holder))
    return runtime.http
