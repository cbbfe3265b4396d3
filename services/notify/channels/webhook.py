"""Webhook channel: one signed JSON POST per notification, classified for the retry step.

* 2xx: delivered. Redirects are not followed (a redirect could point anywhere, including at
  the addresses the SSRF check refused), so 3xx is a permanent failure that names the target.
* Timeouts, connection errors, 5xx, 408 and 429: retryable; ``Retry-After`` (seconds or an
  HTTP-date) is passed on so the retry step can honour it.
* 410 Gone: the receiver says this endpoint is gone for good; the worker disables it.
* Any other 4xx: permanent (the receiver refuses this message; retrying will not change that).

The host is resolved and checked on every send (``ssrf.py``) and the request goes to the
checked address. Request bodies are bounded (``max_body_bytes``) and at most 64 KiB of an
answer is kept (a longer one ends the connection), so a hostile receiver cannot make us hold
megabytes.

The sender is our own (``http1.py``: asyncio plus the llhttp parser from ``httptools``), not
a general client. httpx cost ~3 ms of CPU per request under concurrency, aiohttp ~0.2 ms but a
third of notify's ~0.7 ms per delivery at fan-out rates; a webhook needs one POST to a checked
address and a bounded answer, which ``http1.Sender`` does with its own keep-alive pool keyed by
(address, port, TLS server name), so a connection verified for one host name is never reused
for another name at the same address. Figures: docs/performance.md, "Fan-out".
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable

from services.common.ssrf import (
    ResolutionError,
    Resolver,
    UnsafeURLError,
    check_webhook_url,
)
from services.notify.channels.base import DeliveryOutcome, Destination, Notification
from services.notify.channels.http1 import HTTPError, Sender, refuse_line_breaks, route_for
from services.notify.retry import parse_retry_after
from services.notify.signing import WebhookSecretError, signature_headers

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
RESPONSE_SNIPPET_BYTES = 512
USER_AGENT = "topicwatch-notify/0.1 (+https://www.standardwebhooks.com)"
RETRYABLE_4XX = frozenset({408, 425, 429})
#: One encoder for every body (json.dumps with options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: Open connections at most (keep-alive ones included); the worker's concurrency is below it.
MAX_CONNECTIONS = 1024


def classify_response(
    status_code: int, retry_after_header: str | None, snippet: str = ""
) -> DeliveryOutcome:
    """The outcome of an HTTP answer; pure, so the rules above are tested on their own."""
    detail = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
    if 200 <= status_code < 300:
        return DeliveryOutcome.delivered(f"HTTP {status_code}", status_code)
    if status_code == 410:
        return DeliveryOutcome.gone(detail, status_code)
    if status_code in RETRYABLE_4XX or status_code >= 500:
        return DeliveryOutcome.retryable(detail, parse_retry_after(retry_after_header), status_code)
    if 300 <= status_code < 400:
        return DeliveryOutcome.permanent(f"{detail} (redirects are not followed)", status_code)
    return DeliveryOutcome.permanent(detail, status_code)


class WebhookChannel:
    """Sends notifications as Standard Webhooks requests over ``http1.Sender``."""

    kind = "webhook"

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
        max_connections: int = MAX_CONNECTIONS,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.allow_private = allow_private
        self.max_body_bytes = max_body_bytes
        self.resolver = resolver
        self.clock = clock
        self.max_connections = max_connections
        #: Certificates are always verified; tests pass a context that trusts their own CA.
        self.ssl_context = ssl_context
        # Made on first use: its connections belong to the event loop they were made in, and
        # the app is wired before its loop runs.
        self._sender: Sender | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def sender(self) -> Sender:
        loop = asyncio.get_running_loop()
        if self._sender is None or self._loop is not loop:
            self._sender = Sender(
                ssl_context=self.ssl_context,
                connect_timeout=self.connect_timeout,
                max_idle=self.max_connections,
            )
            self._loop = loop
            # Open connections at most: in flight (bounded here) plus idle (bounded by max_idle).
            self._slots = asyncio.Semaphore(self.max_connections)
        return self._sender

    async def aclose(self) -> None:
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None

    def encode(self, notification: Notification) -> bytes:
        return _JSON.encode(notification.payload()).encode("utf-8")

    async def send(self, notification: Notification, destination: Destination) -> DeliveryOutcome:
        body = self.encode(notification)
        if len(body) > self.max_body_bytes:
            return DeliveryOutcome.permanent(
                f"payload of {len(body)} bytes exceeds the {self.max_body_bytes}-byte limit"
            )
        try:
            target = await check_webhook_url(
                destination.address, allow_private=self.allow_private, resolver=self.resolver
            )
        except UnsafeURLError as exc:
            return DeliveryOutcome.permanent(f"refused URL: {exc.reason}")
        except ResolutionError as exc:
            return DeliveryOutcome.retryable(f"DNS: {exc}")
        try:
            signed = signature_headers(
                notification.id, body, destination.secrets, int(self.clock())
            )
        except WebhookSecretError as exc:
            return DeliveryOutcome.permanent(f"cannot sign: {exc}")
        # The checked address is the one connected to: the route connects to the IP, ``Host``
        # and the TLS server name (SNI and certificate check) carry the original name.
        lines = [f"{name}: {value}" for name, value in signed.items()]
        try:
            route = route_for(destination.address, target.addresses[0], USER_AGENT)
            refuse_line_breaks(lines)
        except ValueError as exc:
            return DeliveryOutcome.permanent(f"cannot build the request: {exc}")
        headers = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        sender = self.sender()
        assert self._slots is not None
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                answer = await sender.post(route, headers, body)
        except TimeoutError:
            return DeliveryOutcome.retryable(f"timeout after {self.timeout:g} s")
        except (HTTPError, OSError, ssl.SSLError) as exc:
            return DeliveryOutcome.retryable(f"connection error: {type(exc).__name__}: {exc}")
        snippet = " ".join(answer.body[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace").split())
        return classify_response(answer.status, answer.retry_after, snippet)
