"""The notify service: ``articles:classified`` -> alerts -> delivery.

For each classified article the percolator finds the subscriptions it matches (indexed by
topic and query terms, so only candidates are checked), and each gets exactly one alert
(``alerts.py``: deterministic id, atomic ``SET NX`` + queue). A near-duplicate of a story a
subscription was already alerted about (``neardup.py``: MinHash over word shingles) does not
alert again: it is listed on that alert's ``also_reported_by``. The delivery worker
(``delivery.py``) then sends it on the subscription's channel, with digests, rate limits,
mutes, retries and dead letters. The stream entry is acknowledged only after every alert of
the article is written, so a crash in between just replays the entry, and replays create
nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from services.common.runtime import Runtime
from services.common.settings import Settings
from services.common.streams import GROUP_NOTIFY
from services.notify.alerts import AlertWriter
from services.notify.api import build_router
from services.notify.channels.base import Channel
from services.notify.channels.email import EmailChannel
from services.notify.channels.webhook import WebhookChannel
from services.notify.delivery import DeliveryMetrics, DeliveryWorker
from services.notify.handlers import NotifyEntries, NotifyMetrics
from services.notify.index import SubscriptionIndex
from services.notify.neardup import RedisNearDuplicates
from services.notify.percolator import Percolator
from services.notify.retry import RetryPolicy
from services.notify.schedule import system_clock
from services.notify.store import SubscriptionStore

DESCRIPTION = "Matches classified articles against subscriptions and delivers alerts."


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = system_clock,
    channels: dict[str, Channel] | None = None,
    sse_ping_seconds: float = 15.0,
) -> FastAPI:
    """The notify app. ``clock`` and ``channels`` are for tests (a manual clock, a TLS
    context for a test SMTP server); the defaults are what production runs."""
    runtime = Runtime(settings, "notify", description=DESCRIPTION)
    for shard in settings.own_partitions:  # one shard of subscriptions per partition
        runtime.keep_window(
            runtime.names.alerts_in(shard),
            settings.alerts_window_days,
            settings.alerts_window_max,
        )
        runtime.keep_window(
            runtime.names.alerts_dead_in(shard),
            settings.dead_letters_window_days,
            settings.dead_letters_window_max,
        )
    store = SubscriptionStore(runtime.redis, runtime.names)
    index = SubscriptionIndex(store, Percolator(runtime.registry))
    writer = AlertWriter(runtime.redis, runtime.names)
    stories = RedisNearDuplicates(runtime.redis, key_prefix=runtime.names.neardup_key("neardup"))
    if channels is None:
        channels = {
            "webhook": WebhookChannel(
                timeout=settings.webhook_timeout, allow_private=settings.allow_private_webhooks
            ),
            "email": EmailChannel.from_settings(settings),
        }
    worker = DeliveryWorker(
        runtime.redis,
        runtime.names,
        store,
        channels,
        RetryPolicy.from_settings(settings),
        DeliveryMetrics(runtime.registry),
        clock=clock,
        lease_seconds=settings.delivery_lease_seconds,
        shards=settings.own_partitions,
    )
    metrics = NotifyMetrics(runtime.registry)
    for partition in settings.own_partitions:
        handle_entries = NotifyEntries(
            redis=runtime.redis,
            names=runtime.names,
            index=index,
            stories=stories,
            writer=writer,
            worker=worker,
            dead_letters=runtime.dead_letters,
            metrics=metrics,
            partition=partition,
        )
        runtime.consume(handle_entries.source, GROUP_NOTIFY, handle_entries)
    runtime.run_in_background("delivery", worker.run)
    runtime.refresh_gauges(worker.refresh_backlog)
    runtime.on_startup(handle_entries.refresh_known_topics)
    runtime.refresh_gauges(handle_entries.refresh_known_topics)
    for channel in channels.values():
        runtime.on_shutdown(channel.aclose)
    runtime.http.include_router(
        build_router(settings, store, worker, clock=clock, sse_ping_seconds=sse_ping_seconds)
    )
    runtime.http.state.worker = worker
    runtime.http.state.store = store
    return runtime.http
