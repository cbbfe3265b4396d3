"""HTTP pieces every service shares: API-key auth, request size limits, /healthz, /metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from fastapi import FastAPI, HTTPException, Request, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.models import errors_as_fields
from services.common.openapi import install_openapi
from services.common.settings import Settings

#: Non-ingest services take small JSON bodies only.
SMALL_BODY_LIMIT = 1024 * 1024


def is_healthy(base_url: str) -> bool:
    """True when a topicwatch service at ``base_url`` answers ``/healthz`` with 200."""
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    base_url: str, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True
) -> None:
    """Block until the service is healthy; ``alive`` lets a caller stop early if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{base_url}: the service exited before it was healthy")
        if is_healthy(base_url):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not healthy within {timeout:g}s")


#: Declares the scheme so FastAPI documents it on every operation that needs a key; it does
#: not check anything itself (``auto_error=False``): ``require_api_key`` does.
_BEARER = HTTPBearer(
    scheme_name="bearer",
    description="An API key from TOPICWATCH_API_KEYS (needed when keys are configured).",
    auto_error=False,
)


def require_api_key(request: Request, _scheme: Any = Security(_BEARER)) -> None:  # noqa: B008
    """FastAPI dependency for write endpoints: ``Authorization: Bearer <key>`` when keys are set.

    Compared in constant time; the key itself is never logged or echoed.
    """
    settings: Settings = request.app.state.runtime.settings
    keys = settings.api_key_values()
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for key in keys:
            if hmac.compare_digest(token.strip().encode(), key.encode()):
                return
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with 413, before they are buffered."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body is larger than the limit of {self.limit} bytes"},
            status_code=413,
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def add_request_limits(app: FastAPI, settings: Settings, limit: int | None = None) -> None:
    app.add_middleware(BodyLimitMiddleware, limit=limit or SMALL_BODY_LIMIT)


def add_field_error_format(app: FastAPI) -> None:
    """Every service answers a bad request the same way: ``{"detail": [{field, message}]}``.

    Ingest builds these itself; without this, FastAPI's own validation (notify's and
    classify's request bodies and query parameters) answered in its internal format.
    The OpenAPI document says so too (``openapi.install_openapi``).
    """
    install_openapi(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = errors_as_fields(exc.errors(), request=True)
        return JSONResponse({"detail": [e.model_dump() for e in errors]}, status_code=422)


class HealthSource(Protocol):
    """What the probes and /metrics read: ``services.common.runtime.Runtime`` is one.

    A protocol rather than an import, so that ``runtime`` (which wires these routes) can import
    this module without this module importing it back.
    """

    service: str
    registry: CollectorRegistry

    @property
    def redis(self) -> Any: ...

    def subscribers_running(self) -> bool: ...

    def liveness(self) -> tuple[bool, dict[str, Any]]: ...

    async def readiness(self) -> tuple[bool, dict[str, Any]]: ...


def add_health_and_metrics(app: FastAPI, runtime: HealthSource) -> None:
    """Probes for orchestrators, and /metrics.

    * ``/livez``: the process and its loops are alive. Never depends on Redis: point a
      liveness probe here, so a Redis outage does not get healthy services killed.
    * ``/readyz``: Redis answers, the service started and its consumers run; 503 with
      ``reasons`` otherwise. Point readiness probes (and load balancers) here.
    * ``/healthz``: the older summary (``redis``, ``subscribers``), kept for compatibility;
      200 exactly when ready, with the same ``reasons`` when not.
    """

    unhealthy: dict[int | str, dict[str, Any]] = {
        503: {"description": "Not alive / not ready: the body says why"}
    }

    @app.get("/livez", tags=["ops"], responses=unhealthy)
    async def livez() -> Any:
        """200 while the process and its loops run (Redis is not consulted); 503 otherwise."""
        alive, details = runtime.liveness()
        return JSONResponse(
            {"status": "ok" if alive else "dead", "service": runtime.service, **details},
            status_code=200 if alive else 503,
        )

    @app.get("/readyz", tags=["ops"], responses=unhealthy)
    async def readyz() -> Any:
        """200 when Redis answers and consumers run; 503 with the reasons otherwise."""
        ready, details = await runtime.readiness()
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": runtime.service, **details},
            status_code=200 if ready else 503,
        )

    @app.get("/healthz", tags=["ops"], responses=unhealthy)
    async def healthz() -> Any:
        """200 when Redis answers and every stream subscriber runs; 503 with reasons otherwise."""
        ready, details = await runtime.readiness()
        body = {"status": "ok" if ready else "unhealthy", "service": runtime.service, **details}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus exposition of this process's registry."""
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)
