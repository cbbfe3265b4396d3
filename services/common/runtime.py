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
import math
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from faststream import FastStream
from faststream.redis.prometheus import RedisPrometheusMiddleware
from faststream.specification import AsyncAPI
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisClusterException, RedisError

from services import __version__
from services.common.connections import broker as make_broker
from services.common.connections import not_a_cluster, redis_client
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
from services.common.layout import LayoutMismatch, check_layout
from services.common.metrics import (
    HttpMetrics,
    HttpMetricsMiddleware,
    drop_unused_broker_metrics,
    process_registry,
)
from services.common.redis_requirements import ServerReport, check_server
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
        self.names = StreamNames.for_settings(settings)
        self.registry = process_registry()
        self.consumer = consumer_name(service)
        self.broker = make_broker(
            settings,
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
        self.redis: aioredis.Redis = redis_client(
            settings, socket_connect_timeout=REDIS_CONNECT_TIMEOUT
        )
        self.consumers: list[StreamConsumer] = []
        self.background: list[tuple[str, BackgroundTask]] = []
        self.shutdown_hooks: list[BackgroundTask] = []
        self.startup_hooks: list[BackgroundTask] = []
        self.gauge_hooks: list[BackgroundTask] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._starter: asyncio.Task[None] | None = None
        self._broker_started = False
        #: Set once Redis answered, passed the checks and consuming began.
        self.started = False
        #: Why the service is not started yet (waiting for Redis...), for /readyz and logs.
        self.waiting: str | None = "starting"
        #: What the start-up check found about the server (None until Redis answered).
        self.server: ServerReport | None = None
        #: Set when the service refuses to run (e.g. an old Redis): the message says why.
        self.fatal: str | None = None
        #: What a refusal does: stop this process (tests running in-process replace it).
        self.on_fatal: Callable[[str], None] = _stop_process
        #: What the watchdog does when a subscriber died for good (its group vanished): stop
        #: this process, forced after the grace period (tests running in-process replace it).
        self.on_subscriber_lost: Callable[[float], None] = _exit_process
        self._beat = time.monotonic()
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
        self.run_in_background(f"reclaim {stream}", consumer.reclaim_forever)
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
        """Serve HTTP at once; connect to Redis in the background, retrying until it answers.

        Compose and Kubernetes start everything together, so Redis may come up after us:
        exiting at start-up would only make the supervisor restart us in a loop. Until Redis
        answers, /livez is 200 and /readyz is 503 saying what we wait for.
        """
        self.started, self.fatal, self.waiting = False, None, "starting"
        self._tasks = [
            asyncio.create_task(self._guard("watchdog", self._watchdog), name="watchdog")
        ]
        self._starter = asyncio.create_task(self._start_when_redis_answers(), name="start")
        try:
            yield
        finally:
            self._starter.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(self._starter, *self._tasks, return_exceptions=True)
            if self._broker_started:
                await self.broker.stop()
            for hook in self.shutdown_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook failed")
            await self.redis.aclose()

    async def _start_when_redis_answers(self) -> None:
        """Check the server, run the start-up hooks, create the groups, start consuming.

        Redis errors mean "not yet": retried with backoff. Anything else (a bug, bad data)
        would fail again the same way, so the service refuses to start and says why.
        """
        delay = START_RETRY_FIRST
        attempt = 0
        hooks_done = 0
        warned = False
        while True:
            attempt += 1
            try:
                report = await check_server(
                    self.redis, require_persistence=self.settings.require_persistence
                )
                self.server = report
                if report.errors:
                    self._refuse("; ".join(report.errors))
                    return
                for warning in report.warnings if not warned else []:
                    log.warning("%s: %s", self.service, warning)
                warned = True
                await check_layout(self.redis, self.names)
                while hooks_done < len(self.startup_hooks):
                    await self.startup_hooks[hooks_done]()
                    hooks_done += 1
                await self._start_consuming()
                break
            except LayoutMismatch as exc:
                self._refuse(str(exc))
                return
            except (RedisError, OSError, RedisClusterException) as exc:
                if not_a_cluster(exc):
                    self._refuse(
                        f"TOPICWATCH_REDIS_CLUSTER=true, but {_where(self.settings.redis_url)} "
                        "is not a cluster node (cluster mode is not enabled on it): unset "
                        "TOPICWATCH_REDIS_CLUSTER for a single server"
                    )
                    return
                await self._stop_broker()
                self.waiting = (
                    f"waiting for Redis at {_where(self.settings.redis_url)}: "
                    f"{type(exc).__name__}: {exc} (attempt {attempt}, next in {delay:.1f}s)"
                )
                log.warning("%s %s", self.service, self.waiting)
                await asyncio.sleep(delay)
                delay = min(delay * 2, START_RETRY_MAX)
            except Exception as exc:
                log.exception("%s: start-up failed", self.service)
                await self._stop_broker()
                self._refuse(f"start-up failed: {type(exc).__name__}: {exc}")
                return
        self.waiting = None
        self.started = True
        self._tasks += [
            asyncio.create_task(self._guard(name, task), name=name)
            for name, task in self.background
        ]
        assert self.server is not None
        log.info(
            "%s started as consumer %s on %s %s",
            self.service,
            self.consumer,
            self.server.product,
            self.server.version,
        )

    async def _start_consuming(self) -> None:
        await ensure_groups(self.redis, [(c.stream, c.group) for c in self.consumers])
        self._broker_started = True
        await self.broker.start()

    async def _stop_broker(self) -> None:
        if self._broker_started:
            with contextlib.suppress(Exception):
                await self.broker.stop()
            self._broker_started = False

    def _refuse(self, reason: str) -> None:
        self.fatal = reason
        self.waiting = None
        log.critical("%s refuses to start: %s", self.service, reason)
        self.on_fatal(reason)

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

    # --- probes ----------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Is this process and its loops alive? Never asks Redis (a Redis outage must not
        make an orchestrator kill services that are only waiting for it)."""
        reasons = []
        if self.fatal:
            reasons.append(f"refused to start: {self.fatal}")
        stale = time.monotonic() - self._beat
        if stale > WATCHDOG_STALE:
            reasons.append(f"watchdog loop silent for {stale:.0f}s")
        starter = self._starter
        if starter is not None and starter.done() and not starter.cancelled():
            if starter.exception() is not None:
                reasons.append(f"start task failed: {starter.exception()!r}")
        loops = {t.get_name(): "running" for t in self._tasks if not t.done()}
        for task in self._tasks:
            if task.done() and not task.cancelled():
                loops[task.get_name()] = "ended"
                reasons.append(f"loop {task.get_name()} ended")
        return not reasons, {"loops": loops, "reasons": reasons}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Can this service do its work now: Redis answers, it started, its consumers run."""
        reasons = []
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.redis.ping(), PROBE_TIMEOUT)
            checks["redis"] = "ok"
        except (RedisError, OSError, TimeoutError, RedisClusterException) as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
            reasons.append(
                f"redis at {_where(self.settings.redis_url)} unreachable: "
                f"{type(exc).__name__}: {exc}".rstrip(": ")
            )
        if self.started:
            checks["subscribers"] = "ok" if self.subscribers_running() else "stopped"
            if checks["subscribers"] != "ok":
                reasons.append("a stream subscriber stopped")
        else:
            checks["subscribers"] = "not started"
        if self.fatal:
            reasons.append(f"refused to start: {self.fatal}")
        elif not self.started:
            reasons.append(self.waiting or "starting")
        if self.server is not None:
            checks["server"] = f"{self.server.product} {self.server.version}"
            if self.server.warnings:
                checks["warnings"] = "; ".join(self.server.warnings)
        return not reasons, {**checks, "reasons": reasons}

    async def _watchdog(self) -> None:
        """Refresh stream gauges; exit the process if a subscriber died (e.g. NOGROUP).

        FastStream stops a subscriber for good when its group vanishes (a Redis restart without
        persistence). Exiting lets the supervisor (``topicwatch up``, systemd, k8s) restart us,
        and the restart re-creates the groups from 0.
        """
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(2.0)
            self._beat = time.monotonic()
            if not self.started:
                continue
            if not self.subscribers_running():
                log.critical("a stream subscriber stopped; exiting so the supervisor restarts us")
                self.on_subscriber_lost(self.settings.shutdown_grace)
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
        """Length, pending and lag of every consumed stream.

        Lag is XINFO GROUPS' own ``lag`` (Redis 7+). Redis leaves it nil when deleted entries
        lie beyond the group's position; then only the cheap cases are answered (caught up:
        0; behind the first entry: the whole length) and otherwise the gauge says NaN
        (unknown) rather than walk the stream: counting a large backlog entry by entry is what
        stalled Redis on 6.2, exactly when the pipe was behind.
        """
        for consumer in self.consumers:
            length = await self.redis.xlen(consumer.stream)
            self.stream_length.labels(consumer.stream).set(length)
            for group in await self.redis.xinfo_groups(consumer.stream):
                name = as_text(group.get("name"))
                if name != consumer.group:
                    continue
                self.stream_pending.labels(consumer.stream, name).set(int(group["pending"]))
                lag = group.get("lag")
                if lag is None:
                    lag = await self._lag_without_count(
                        consumer.stream, as_text(group.get("last-delivered-id")), length
                    )
                self.stream_lag.labels(consumer.stream, name).set(float(lag))

    async def _lag_without_count(self, stream: str, last: str, length: int) -> float:
        if length == 0:
            return 0
        newest = await self.redis.xrevrange(stream, count=1)
        oldest = await self.redis.xrange(stream, count=1)
        if newest and _id(newest[0][0]) <= _id(last):
            return 0
        if oldest and _id(last) < _id(oldest[0][0]):
            return length
        return math.nan


#: Seconds a connection attempt to Redis may take (an unroutable host would hang otherwise).
REDIS_CONNECT_TIMEOUT = 5.0
#: How long a probe waits for PING before it says Redis is unreachable.
PROBE_TIMEOUT = 2.0
#: Backoff between start attempts while Redis does not answer: doubling up to the cap.
START_RETRY_FIRST = 0.25
START_RETRY_MAX = 5.0
#: /livez fails when the watchdog loop has not run for this long (the event loop is stuck).
WATCHDOG_STALE = 30.0

#: Seconds between two window trims of the record streams (cheap, approximate XTRIMs).
WINDOW_TRIM_INTERVAL = 10.0


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = as_text(value).partition("-")
    return int(ms or 0), int(seq or 0)


def _where(url: str | None) -> str:
    """host:port of a Redis URL, without the password it may hold."""
    from urllib.parse import urlsplit

    where = []
    for one in (url or "").split(",") or [""]:
        parts = urlsplit(one.strip())
        where.append(f"{parts.hostname}:{parts.port or 6379}")
    return ",".join(where)


def _exit_process(grace: float) -> None:
    """SIGTERM ourselves so uvicorn shuts down, and exit anyway after ``grace`` seconds."""
    _exit_after(grace)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop_process(_reason: str) -> None:
    """Make uvicorn shut down (SIGTERM), with a forced exit if that hangs."""
    _exit_after(15.0)
    os.kill(os.getpid(), signal.SIGTERM)


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
