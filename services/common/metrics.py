"""The metrics every service process exposes besides its own: process, HTTP, broker.

One registry per process (a test can build several apps in one interpreter without their
series mixing), with the collectors the default registry would have had: ``process_*``
(CPU, memory, open files, start time), ``python_info`` and ``python_gc_*``.

Every label value comes from a fixed set, so a scanner probing random URLs, or a client
sending an odd method, cannot grow the series count: HTTP requests are labelled with the
route *template* (``/v1/subscriptions/{subscription_id}``, or ``unmatched``), the method
(one of :data:`HTTP_METHODS` or ``other``) and the status class (``2xx``...).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HTTP_METHODS",
    "HttpMetrics",
    "HttpMetricsMiddleware",
    "drop_unused_broker_metrics",
    "process_registry",
]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

#: Request durations: from a cached GET (~1 ms) to a large ingest batch or a long SSE stream.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def process_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors registered.

    The ``*_created`` samples are turned off (process-wide): in the Prometheus text format
    each would be one more gauge series per labelled child, doubling the series count for
    nothing Prometheus uses.
    """
    disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def drop_unused_broker_metrics(registry: CollectorRegistry) -> None:
    """Unregister FastStream's ``faststream_published_*`` families.

    Every service writes its output with redis-py (XADD inside pipelines and Lua scripts, so
    that a write and the acknowledgement it allows are ordered), never through FastStream's
    publisher, so these families could only ever be empty: a dashboard built on them would
    show a flat line that looks like "nothing published". What is written is counted by each
    service's own counters (``topicwatch_ingest_articles_total``,
    ``topicwatch_classify_articles_total``, ``topicwatch_notify_alerts_total``...).
    The received-side families stay: FastStream's subscribers do read the streams.
    """
    for name in (
        "faststream_published_messages_total",
        "faststream_published_messages_duration_seconds",
        "faststream_published_messages_exceptions_total",
    ):
        collector = registry._names_to_collectors.get(name)
        if collector is not None:
            registry.unregister(collector)


class HttpMetrics:
    """The two HTTP families, created once per registry (the middleware only records)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests_total = Counter(
            "topicwatch_http_requests_total",
            "HTTP requests answered, by method, route template and status class.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "topicwatch_http_request_duration_seconds",
            "Time from request start to the end of the response, by method and route template.",
            ["method", "route"],
            registry=registry,
            buckets=HTTP_BUCKETS,
        )


class HttpMetricsMiddleware:
    """Count and time every HTTP request by method, route template and status class.

    A pure ASGI middleware (no body buffering, streaming responses pass through): the route
    template is read from the scope after routing, where Starlette leaves the matched route.
    The duration runs until the response is complete, so an SSE stream counts for as long as
    it stays open.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            method = scope.get("method", "")
            method = method if method in HTTP_METHODS else "other"
            route = route_template(scope, self.routes)
            self.metrics.requests_total.labels(method, route, status_class(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - start)


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The matched route's path template, or ``unmatched`` (404s for unknown paths).

    A request refused before routing (413 from the body limit) has no route in its scope:
    it is matched here against the app's routes, so it still counts against the endpoint it
    was sent to.
    """
    route = scope.get("route")
    if route is None:
        for candidate in _flat_routes(routes):
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:  # FULL, or PARTIAL: the path is right, the method not
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def _flat_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes with a path template, looking into included routers (FastAPI wraps each
    ``include_router`` in an object that has no path of its own)."""
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            yield route
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if isinstance(inner, list):
            yield from _flat_routes(inner)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"
