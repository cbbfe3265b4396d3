"""Webhook channel: one signed JSON POST per notification, classified for the retry step.

* 2xx: delivered. Redirects are not followed (a redirect could point anywhere, including at
  the addresses the SSRF check refused), so 3xx is a permanent failure that names the target.
* Timeouts, connection errors, 5xx, 408 and 429: retryable; ``Retry-After`` (seconds or an
  HTTP-date) is passed on so the retry step can honour it.
* 410 Gone: the receiver says this endpoint is gone for good; the worker disables it.
* Any other 4xx: permanent (the receiver refuses this message; retrying will not change that).

The host is resolved and checked on every send (``ssrf.py``) and the request goes to the
checked address. Request bodies are bounded (``max_body_bytes``) and at most a short prefix of
the response is read, so a hostile receiver cannot make us hold megabytes.

The client is aiohttp, not httpx (which the rest of topicwatch uses for its few outbound
requests): fan-out sends thousands of requests a second from one process, and measured
against the same keep-alive receiver with the same signing and pinning, httpx's request path
cost ~3 ms of CPU per request under concurrency (its connection pool scans every connection
per request, and httpcore detects the async library through imports on every call) against
~0.2 ms for aiohttp. aiohttp also keys its connection pool by the TLS server name, so a pooled
connection verified for one host name is never reused for another name at the same address.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from services.common.ssrf import (
    ResolutionError,
    Resolver,
    UnsafeURLError,
    check_webhook_url,
)
from services.notify.channels.base import DeliveryOutcome, Destination, Notification
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
    """Sends notifications as Standard Webhooks requests with aiohttp."""

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
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.max_body_bytes = max_body_bytes
        self.resolver = resolver
        self.clock = clock
        self.max_connections = max_connections
        #: Certificates are always verified; tests pass a context that trusts their own CA.
        self.ssl_context = ssl_context
        # The send's own asyncio.timeout bounds the whole request; no second set of timers.
        self._timeout = aiohttp.ClientTimeout(total=None)
        # Made on first use: an aiohttp session belongs to the event loop it was made in, and
        # the app is wired before its loop runs.
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env=False: an HTTP(S)_PROXY from the environment would connect on our
            # behalf to whatever the name resolves to there, defeating the address pinning.
            # Every request goes to a literal address, so the connector never resolves names.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections,
                    limit_per_host=0,
                    use_dns_cache=False,
                    ssl=self.ssl_context if self.ssl_context is not None else True,
                ),
                trust_env=False,
                auto_decompress=False,
                headers={"user-agent": USER_AGENT},
                timeout=self._timeout,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        # The checked address is the one connected to: the URL carries the IP, ``Host`` and
        # the TLS server name (SNI and certificate check) the original name.
        url, pin_headers, server_hostname = target.pinned_parts()
        headers = {"content-type": "application/json", **signed, **pin_headers}
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(
                    URL(url, encoded=True),
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    server_hostname=server_hostname,
                ) as response:
                    snippet = await _read_prefix(response, RESPONSE_SNIPPET_BYTES)
                    retry_after = response.headers.get("retry-after")
                    status = response.status
        except TimeoutError:
            return DeliveryOutcome.retryable(f"timeout after {self.timeout:g} s")
        except aiohttp.ClientError as exc:
            return DeliveryOutcome.retryable(f"connection error: {type(exc).__name__}: {exc}")
        return classify_response(status, retry_after, snippet)


async def _read_prefix(response: aiohttp.ClientResponse, limit: int) -> str:
    """At most ``limit`` bytes of the body, for the attempt log; the rest is never read."""
    data = b""
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return " ".join(data[:limit].decode("utf-8", "replace").split())
