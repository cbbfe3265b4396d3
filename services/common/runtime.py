"""What every service process is made of, wired once: Redis, the broker, metrics, HTTP, lifecycle.

Each service's ``create_app(settings)`` builds a :class:`Runtime`, registers its consumers,
routes and background tasks on it, and returns ``runtime.http`` (a FastAPI app) for uvicorn.
Nothing connects at import time or in ``create_app``: connections open in the lifespan, so a
test or the CLI can build an app and decide when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from fastapi import FastAPI
from faststream import FastStream
from faststream.redis import RedisBroker
from faststream.redis.prometheus import RedisPrometheusMiddleware
from faststream.specification import AsyncAPI
from prometheus_client import Counter, Gauge

from services import __version__
from services.common.consumer import (
    BatchHandler,
    DeadLetters,
    StreamConsumer,
    consumer_name,
    ensure_groups,
)
from services.common.http import (
    add_field_error_format,
    add_health_and_metrics,
    add_request_limits,
)
from services.common.metrics import (
    HttpMetrics,
    HttpMetricsMiddleware,
    drop_unused_broker_metrics,
    process_registry,
)
from services.common.retention import trim_consumed, trim_window
from services.common.settings import Settings
from services.common.streams import StreamNames, as_text

log = logging.getLogger(__name__)

BackgroundTask = Callable[[], Awaitable[None]]


class Runtime:
    """One service process: settings, Redis client, FastStream broker, registry, HTTP app."""

    def __init__(
        self,
        settings: Settings,
        service: str,
        *,
        description: str = "",
        body_limit: int | None = None,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("TOPICWATCH_REDIS_URL must be set to run a service on its own")
        self.settings = settings
        self.service = service
        self.names = StreamNames(settings.stream_prefix)
        self.registry = process_registry()
        self.consumer = consumer_name(service)
        self.broker = RedisBroker(
            settings.redis_url,
            middlewares=[RedisPrometheusMiddleware(registry=self.registry, app_name=service)],
            log_level=logging.DEBUG,
        )
        drop_unused_broker_metrics(self.registry)
        self.faststream = FastStream(
            self.broker,
            specification=AsyncAPI(
                title=f"topicwatch {service}", version=__version__, description=description
            ),
        )
        self.redis: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url)
        # Counted inside Redis: a lagging group would otherwise ship up to LAG_COUNT_CAP whole
        # articles to this process every few seconds, just to count them.
        self._count_after = self.redis.register_script(_COUNT_AFTER)
        self.consumers: list[StreamConsumer] = []
        self.background: list[tuple[str, BackgroundTask]] = []
        self.shutdown_hooks: list[BackgroundTask] = []
        self.startup_hooks: list[BackgroundTask] = []
        self.gauge_hooks: list[BackgroundTask] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: Record streams this process writes and keeps to a window: (stream, days, max len).
        self.windows: list[tuple[str, float, int]] = []
        self.keep_window(
            self.names.dead_letters,
            settings.dead_letters_window_days,
            settings.dead_letters_window_max,
        )
        self._windows_trimmed_at = 0.0
        self.dead_letters_total = Counter(
            "topicwatch_dead_letters_total",
            "Stream entries dead-lettered (bad entry, or failed max deliveries), by source stream.",
            ["stream"],
            registry=self.registry,
        )
        #: For handlers that dead-letter an entry themselves (a payload that can never parse).
        self.dead_letters = DeadLetters(
            self.redis,
            self.names.dead_letters,
            on_dead_letter=lambda s: self.dead_letters_total.labels(s).inc(),
        )
        self.stream_length = Gauge(
            "topicwatch_stream_length", "Entries in a stream.", ["stream"], registry=self.registry
        )
        self.stream_pending = Gauge(
            "topicwatch_stream_pending",
            "Entries delivered to a consumer group but not yet acknowledged.",
            ["stream", "group"],
            registry=self.registry,
        )
        self.trimmed_total = Counter(
            "topicwatch_stream_trimmed_total",
            "Entries removed from a stream by retention (consumed ones) or by its window.",
            ["stream"],
            registry=self.registry,
        )
        self.stream_lag = Gauge(
            "topicwatch_stream_lag",
            "Entries not yet delivered to a consumer group.",
            ["stream", "group"],
            registry=self.registry,
        )
        self.http = FastAPI(
            title=f"topicwatch {service}",
            version=__version__,
            description=description,
            lifespan=self._lifespan,
        )
        self.http.state.runtime = self
        add_request_limits(self.http, settings, body_limit)
        add_health_and_metrics(self.http, self)
        add_field_error_format(self.http)
        # Added last, so it is the outermost layer: it also times and counts the 413s that the
        # body limit answers before routing.
        self.http.add_middleware(
            HttpMetricsMiddleware, metrics=HttpMetrics(self.registry), routes=self.http.routes
        )

    # --- wiring ----------------------------------------------------------------------------
    def consume(self, stream: str, group: str, handler: BatchHandler) -> StreamConsumer:
        """Consume ``stream`` in ``group`` with reclaim and dead-lettering (see consumer.py)."""
        consumer = StreamConsumer(
            settings=self.settings,
            client=self.redis,
            stream=stream,
            group=group,
            consumer=self.consumer,
            dead_letter_stream=self.names.dead_letters,
            handler=handler,
            on_dead_letter=lambda s: self.dead_letters_total.labels(s).inc(),
        )
        # The series exists at 0 from the start, so increase() sees the very first dead letter.
        self.dead_letters_total.labels(stream)
        consumer.register(self.broker)
        self.consumers.append(consumer)
        return consumer

    def keep_window(self, stream: str, days: float, max_len: int) -> None:
        """Keep the record stream ``stream`` (written here, read by people and tools, not by a
        consumer group) to ``days`` and about ``max_len`` entries; see ``apply_windows``."""
        self.windows.append((stream, days, max_len))

    def run_in_background(self, name: str, task: BackgroundTask) -> None:
        """A coroutine that runs for the life of the process (feed poller, delivery loop...)."""
        self.background.append((name, task))

    def on_startup(self, hook: BackgroundTask) -> None:
        """Run ``hook`` before consuming starts (and before /healthz answers 200)."""
        self.startup_hooks.append(hook)

    def refresh_gauges(self, hook: BackgroundTask) -> None:
        """Run ``hook`` every watchdog tick (2 s) to set gauges read from Redis (backlogs)."""
        self.gauge_hooks.append(hook)

    def on_shutdown(self, hook: BackgroundTask) -> None:
        """Run ``hook`` when the process stops (close clients, flush state)."""
        self.shutdown_hooks.append(hook)

    # --- lifecycle -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        for hook in self.startup_hooks:
            await hook()
        await ensure_groups(self.redis, [(c.stream, c.group) for c in self.consumers])
        await self.broker.start()
        self._tasks = [
            asyncio.create_task(self._guard(name, task), name=name)
            for name, task in [*self.background, ("watchdog", self._watchdog)]
        ]
        log.info("%s started as consumer %s", self.service, self.consumer)
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.broker.stop()
            for hook in self.shutdown_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook failed")
            await self.redis.aclose()

    async def _guard(self, name: str, task: BackgroundTask) -> None:
        """Keep a background task alive: log and restart it after an error (with backoff)."""
        delay = 0.5
        while True:
            try:
                await task()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed; restarting in %.1fs", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def subscribers_running(self) -> bool:
        return all(getattr(s, "running", True) for c in self.consumers for s in c.subscribers)

    async def _watchdog(self) -> None:
        """Refresh stream gauges; exit the process if a subscriber died (e.g. NOGROUP).

        FastStream stops a subscriber for good when its group vanishes (a Redis restart without
        persistence). Exiting lets the supervisor (``topicwatch up``, systemd, k8s) restart us,
        and the restart re-creates the groups from 0.
        """
        while True:
            await asyncio.sleep(2.0)
            if not self.subscribers_running():
                log.critical("a stream subscriber stopped; exiting so the supervisor restarts us")
                _exit_after(self.settings.shutdown_grace)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            with contextlib.suppress(Exception):
                await self.refresh_stream_gauges()
            for hook in self.gauge_hooks:
                with contextlib.suppress(Exception):
                    await hook()
            if self.settings.stream_retention:
                with contextlib.suppress(Exception):
                    await self.apply_retention(self.settings.stream_retention)
            if time.monotonic() - self._windows_trimmed_at >= WINDOW_TRIM_INTERVAL:
                self._windows_trimmed_at = time.monotonic()
                with contextlib.suppress(Exception):
                    await self.apply_windows()

    async def apply_retention(self, keep: int) -> None:
        """Trim each consumed stream to ``keep`` entries, never below what a group needs."""
        for consumer in self.consumers:
            removed = await trim_consumed(self.redis, consumer.stream, keep)
            if removed:
                self.trimmed_total.labels(consumer.stream).inc(removed)

    async def apply_windows(self, now_ms: int | None = None) -> None:
        """Trim every record stream this process writes to its time and count window."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        for stream, days, max_len in self.windows:
            removed = await trim_window(
                self.redis,
                stream,
                max_age_ms=int(days * 86_400_000),
                max_len=max_len,
                now_ms=now_ms,
            )
            if removed:
                self.trimmed_total.labels(stream).inc(removed)

    async def refresh_stream_gauges(self) -> None:
        """Length, pending and lag of every consumed stream (lag computed on Redis 6.2 too)."""
        for consumer in self.consumers:
            length = await self.redis.xlen(consumer.stream)
            self.stream_length.labels(consumer.stream).set(length)
            for group in await self.redis.xinfo_groups(consumer.stream):
                name = as_text(group.get("name"))
                if name != consumer.group:
                    continue
                self.stream_pending.labels(consumer.stream, name).set(int(group["pending"]))
                lag = group.get("lag")
                if lag is None:  # Redis < 7 (or lag unknown): count after last-delivered-id
                    last = as_text(group.get("last-delivered-id")) or "0-0"
                    lag = await self._count_after(keys=[consumer.stream], args=[f"({last}"])
                self.stream_lag.labels(consumer.stream, name).set(int(lag))


#: Seconds between two window trims of the record streams (cheap, approximate XTRIMs).
WINDOW_TRIM_INTERVAL = 10.0

#: The lag gauge counts at most this many entries on Redis < 7 (where XINFO has no lag).
LAG_COUNT_CAP = 100_000

_COUNT_AFTER = f"""
return #redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', {LAG_COUNT_CAP})
"""


def _exit_after(grace: float) -> None:
    """Exit the process in ``grace`` seconds unless a clean shutdown finished first.

    After a group vanished, the clean shutdown can hang (seen once in ~10 runs: FastStream's
    stop waiting on the other subscriber of the dead group), and a service that neither
    serves nor exits is never restarted. The timer is a daemon thread, so it fires even if
    the event loop is stuck, and does nothing if the process ends first.
    """

    def force() -> None:
        log.critical("clean shutdown did not finish within %gs; exiting now", grace)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(grace, force)
    timer.daemon = True
    timer.start()
